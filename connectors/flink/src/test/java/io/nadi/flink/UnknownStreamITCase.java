package io.nadi.flink;

import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.nadi.flink.client.NadiClient;
import io.nadi.flink.source.NadiSource;
import java.util.concurrent.TimeUnit;
import org.apache.flink.api.common.eventtime.WatermarkStrategy;
import org.apache.flink.api.common.serialization.SimpleStringSchema;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.streaming.api.functions.sink.legacy.DiscardingSink;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/** A source on a stream that does not exist fails the job with an error naming the stream. */
class UnknownStreamITCase {
    @Test
    @Timeout(value = 60, unit = TimeUnit.SECONDS)
    void sourceOnAMissingStreamFailsClearly() throws Exception {
        try (NadiServer server = NadiServer.start(); NadiClient client = new NadiClient(server.controller())) {
            client.createStream("it", "present", 1);
            StreamExecutionEnvironment env = FlinkJobs.env(500);
            env.fromSource(NadiSource.<String>builder().controller(server.controller()).stream("it/missing")
                            .deserializer(new SimpleStringSchema()).boundedAtTail().build(),
                    WatermarkStrategy.noWatermarks(), "missing")
                    .addSink(new DiscardingSink<>());
            Exception e = assertThrows(Exception.class, () -> env.execute("unknown-stream-it"));
            StringBuilder chain = new StringBuilder();
            for (Throwable c = e; c != null; c = c.getCause()) {
                chain.append(c.getMessage()).append('\n');
            }
            assertTrue(chain.toString().contains("it/missing") && chain.toString().contains("NOT_FOUND_STREAM"),
                    chain.toString());
        }
    }
}
