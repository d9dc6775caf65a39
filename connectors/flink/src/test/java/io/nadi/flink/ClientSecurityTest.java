package io.nadi.flink;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.nadi.flink.client.ClientSecurity;
import io.nadi.flink.sink.NadiSerializationSchema;
import io.nadi.flink.sink.NadiSink;
import io.nadi.flink.source.NadiSource;
import java.util.List;
import org.apache.flink.api.common.serialization.SimpleStringSchema;
import org.apache.flink.util.InstantiationUtil;
import org.junit.jupiter.api.Test;

/** The token option without a server: what is accepted, and that the token never shows. */
class ClientSecurityTest {
    private static final String TOKEN = "s3cret-t0ken";

    @Test
    void tokensThatCannotBeSentAreRefusedWithoutBeingEchoed() {
        for (String bad : List.of("", "  ", "se\ncret", "sécret")) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> ClientSecurity.none().withToken(bad));
            assertFalse(e.getMessage().contains("cret"), e.getMessage());
        }
        assertFalse(ClientSecurity.none().withToken(null).hasToken());
        assertTrue(ClientSecurity.none().withToken(" " + TOKEN + "\n").hasToken()); // as read from a file
    }

    @Test
    void theTokenIsInNoToStringButTravelsWithTheJob() throws Exception {
        ClientSecurity security = ClientSecurity.none().withToken(TOKEN);
        assertEquals("ClientSecurity{token=<hidden>}", security.toString());
        NadiSource<String> source = NadiSource.<String>builder().controller("http://127.0.0.1:9090").token(TOKEN)
                .stream("s/t").deserializer(new SimpleStringSchema()).build();
        NadiSink<String> sink = NadiSink.<String>builder().controller("http://127.0.0.1:9090").token(TOKEN)
                .stream("s/t").serializer(NadiSerializationSchema.of(new SimpleStringSchema(), null)).build();
        for (Object o : List.of(source, sink)) {
            assertFalse(o.toString().contains(TOKEN), o.toString());
            assertTrue(o.toString().contains("token=<hidden>"), o.toString());
        }
        // The task managers get the source and sink serialized, token included.
        NadiSource<?> copy = InstantiationUtil.clone(source);
        assertTrue(copy.toString().contains("token=<hidden>"), copy.toString());
    }

    @Test
    void httpsControllersAreRefusedAtBuildTime() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> NadiSink.<String>builder().controller("https://nadi.example:9090").stream("s/t")
                        .serializer(NadiSerializationSchema.of(new SimpleStringSchema(), null)).build());
        assertTrue(e.getMessage().contains("TLS is not supported"), e.getMessage());
    }
}
