package io.nadi.flink;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.nadi.flink.client.NadiClient;
import io.nadi.flink.client.NadiException;
import io.nadi.flink.client.RoutedWriter;
import io.nadi.flink.client.StreamId;
import io.nadi.flink.source.NadiSource;
import io.nadi.proto.controller.v1.SegmentLocation;
import java.nio.charset.StandardCharsets;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.apache.flink.api.common.eventtime.WatermarkStrategy;
import org.apache.flink.api.common.serialization.SimpleStringSchema;
import org.apache.flink.configuration.Configuration;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.streaming.api.functions.sink.legacy.DiscardingSink;
import org.apache.flink.table.api.EnvironmentSettings;
import org.apache.flink.table.api.TableEnvironment;
import org.apache.flink.table.api.ValidationException;
import org.apache.flink.types.Row;
import org.apache.flink.util.CloseableIterator;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * Starting at a time (issue 22): events are written in two batches whose append times (the
 * store's clock, whole seconds) are on either side of T, with a split of the stream between
 * them and another split inside the second batch. A bounded job started from T, through the
 * DataStream builder and through SQL ({@code 'scan.startup.mode' = 'timestamp'}), reads exactly
 * the second batch. A time ahead of the clock is {@code TIME_IN_FUTURE}, from the client and as
 * the cause of the job's failure; bad startup options are {@link ValidationException}s. About 15 s.
 */
class StartFromTimestampITCase {
    private static final int KEYS = 10;

    @Test
    @Timeout(value = 120, unit = TimeUnit.SECONDS)
    void aJobStartedAtATimeReadsExactlyTheEventsAppendedFromThen() throws Exception {
        try (NadiServer server = NadiServer.start(); NadiClient client = new NadiClient(server.controller())) {
            client.createStream("it", "seek", 2);
            StreamId stream = StreamId.parse("it/seek");

            write(client, stream, "first", 0, 300); // acknowledged (durable) when this returns
            // T: the next full second after the acknowledgement. Batch 1's append times are the
            // store's clock rounded down to the second, so all are < T.
            long t = (System.currentTimeMillis() / 1000 + 1) * 1000;
            server.cli("stream", "scale", "it/seek", "--split", id(client.activeSegments("it", "seek").get(0)));
            awaitClockPast(t);
            List<String> second = new ArrayList<>(write(client, stream, "second", 0, 300));
            server.cli("stream", "scale", "it/seek", "--split", id(client.activeSegments("it", "seek").get(0)));
            second.addAll(write(client, stream, "second", 300, 600));
            assertEquals(4, client.activeSegments("it", "seek").size());

            // DataStream: startFromTimestamp (and its Instant twin), bounded at the tail.
            StreamExecutionEnvironment env = FlinkJobs.env(500);
            NadiSource<String> source = NadiSource.<String>builder().controller(server.controller())
                    .stream("it/seek").deserializer(new SimpleStringSchema())
                    .startAt(Instant.ofEpochMilli(t)).boundedAtTail().build();
            List<String> read = new ArrayList<>();
            try (CloseableIterator<String> it = env.fromSource(source, WatermarkStrategy.noWatermarks(), "seek")
                    .executeAndCollect("start-at-time-it")) {
                it.forEachRemaining(read::add);
            }
            assertSameMultiset(second, read, "DataStream job from T");

            // SQL: 'scan.startup.mode' = 'timestamp'.
            TableEnvironment tenv = tableEnv();
            tenv.executeSql("CREATE TABLE from_t (k STRING, v STRING) WITH ('connector' = 'nadi', 'controller' = '"
                    + server.controller() + "', 'stream' = 'it/seek', 'format' = 'csv', 'scan.bounded' = 'true', "
                    + "'scan.startup.mode' = 'timestamp', 'scan.startup.timestamp-millis' = '" + t + "')");
            List<String> rows = new ArrayList<>();
            try (CloseableIterator<Row> it = tenv.executeSql("SELECT k, v FROM from_t").collect()) {
                it.forEachRemaining(r -> rows.add(r.getField(0) + "," + r.getField(1)));
            }
            assertSameMultiset(second, rows, "SQL job from T");
            System.out.printf("start-at-time: %d of %d events read from T, twice%n", read.size(), 2 * 300 + 300);
        }
    }

    @Test
    @Timeout(value = 120, unit = TimeUnit.SECONDS)
    void aTimeInTheFutureIsATypedErrorAndBadOptionsAreValidationErrors() throws Exception {
        try (NadiServer server = NadiServer.start(); NadiClient client = new NadiClient(server.controller())) {
            client.createStream("it", "future", 1);
            long future = System.currentTimeMillis() + 86_400_000L;
            NadiException e = assertThrows(NadiException.class, () -> client.cutAt("it", "future", future));
            assertEquals("TIME_IN_FUTURE", e.reason(), e.getMessage());

            StreamExecutionEnvironment env = FlinkJobs.env(500);
            env.fromSource(NadiSource.<String>builder().controller(server.controller()).stream("it/future")
                            .deserializer(new SimpleStringSchema()).startFromTimestamp(future).build(),
                    WatermarkStrategy.noWatermarks(), "future")
                    .addSink(new DiscardingSink<>());
            Exception failed = assertThrows(Exception.class, () -> env.execute("future-it"));
            String chain = chain(failed);
            assertTrue(chain.contains("[TIME_IN_FUTURE]") && chain.contains("it/future"), chain);

            TableEnvironment tenv = tableEnv();
            String with = "WITH ('connector' = 'nadi', 'controller' = '" + server.controller()
                    + "', 'stream' = 'it/future', 'format' = 'csv'";
            tenv.executeSql("CREATE TABLE missing (v STRING) " + with + ", 'scan.startup.mode' = 'timestamp')");
            tenv.executeSql("CREATE TABLE malformed (v STRING) " + with + ", 'scan.startup.mode' = 'timestamp', "
                    + "'scan.startup.timestamp-millis' = '2026-01-01')");
            tenv.executeSql("CREATE TABLE mixed (v STRING) " + with + ", 'scan.startup.mode' = 'earliest', "
                    + "'scan.startup.timestamp-millis' = '1000')");
            tenv.executeSql("CREATE TABLE bad_mode (v STRING) " + with + ", 'scan.startup.mode' = 'group-offsets')");
            String[][] cases = {
                {"missing", "requires 'scan.startup.timestamp-millis'"},
                {"malformed", "'2026-01-01'"},
                {"mixed", "only allowed with 'scan.startup.mode' = 'timestamp'"},
                {"bad_mode", "'group-offsets'"},
            };
            for (String[] c : cases) {
                ValidationException v = assertThrows(ValidationException.class,
                        () -> tenv.executeSql("SELECT * FROM " + c[0]), c[0]);
                assertTrue(chain(v).contains(c[1]), c[0] + ": " + chain(v));
            }
        }
    }

    /** Writes {@code LABEL-kK,I} for I in {@code from..to}, flushed; returns the lines. */
    private static List<String> write(NadiClient client, StreamId stream, String label, int from, int to)
            throws NadiException {
        List<String> lines = new ArrayList<>();
        try (RoutedWriter w = RoutedWriter.forStream(client, stream)) {
            for (int i = from; i < to; i++) {
                String key = label + "-k" + (i % KEYS);
                String line = key + "," + i;
                w.write(key, line.getBytes(StandardCharsets.UTF_8));
                lines.add(line);
            }
            w.flush();
        }
        return lines;
    }

    private static void awaitClockPast(long t) throws InterruptedException {
        while (System.currentTimeMillis() <= t) {
            Thread.sleep(Math.max(1, t + 1 - System.currentTimeMillis()));
        }
    }

    private static void assertSameMultiset(List<String> expected, List<String> actual, String what) {
        List<String> e = new ArrayList<>(expected);
        List<String> a = new ArrayList<>(actual);
        e.sort(null);
        a.sort(null);
        assertEquals(e.size(), a.size(), what + ": number of events");
        assertEquals(e, a, what);
    }

    private static TableEnvironment tableEnv() {
        Configuration conf = new Configuration();
        conf.setString("parallelism.default", "2");
        conf.setString("taskmanager.numberOfTaskSlots", "4");
        return TableEnvironment.create(EnvironmentSettings.newInstance().inStreamingMode().withConfiguration(conf).build());
    }

    private static String id(SegmentLocation l) {
        return Long.toString(l.getSegment().getId());
    }

    private static String chain(Throwable e) {
        StringBuilder b = new StringBuilder();
        for (Throwable c = e; c != null; c = c.getCause()) {
            b.append(c.getMessage()).append('\n');
        }
        return b.toString();
    }
}
