package io.nadi.flink;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.nadi.flink.client.NadiClient;
import io.nadi.flink.client.RoutedWriter;
import io.nadi.flink.client.StreamId;
import java.nio.charset.StandardCharsets;
import java.time.LocalDateTime;
import java.time.format.DateTimeFormatter;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.apache.flink.configuration.Configuration;
import org.apache.flink.table.api.EnvironmentSettings;
import org.apache.flink.table.api.TableEnvironment;
import org.apache.flink.table.api.ValidationException;
import org.apache.flink.types.Row;
import org.apache.flink.util.CloseableIterator;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * Acceptance 3: Flink SQL over {@code 'connector' = 'nadi'} tables: a TUMBLE window count per
 * key from a JSON stream into another JSON stream, checked against counts computed from the
 * generated input; a CSV round trip through an at-least-once sink; and a clear error for a bad
 * option.
 */
class SqlITCase {
    private static final DateTimeFormatter TS = DateTimeFormatter.ofPattern("yyyy-MM-dd HH:mm:ss.SSS");
    private static final DateTimeFormatter WIN = DateTimeFormatter.ofPattern("yyyy-MM-dd HH:mm:ss");

    private static TableEnvironment tableEnv() {
        Configuration conf = new Configuration();
        conf.setString("parallelism.default", "2");
        conf.setString("execution.checkpointing.interval", "300ms");
        conf.setString("taskmanager.numberOfTaskSlots", "4");
        return TableEnvironment.create(EnvironmentSettings.newInstance().inStreamingMode().withConfiguration(conf).build());
    }

    private static String with(NadiServer server, String stream, String format, String extra) {
        return "WITH ('connector' = 'nadi', 'controller' = '" + server.controller() + "', 'stream' = '" + stream
                + "', 'format' = '" + format + "'" + extra + ")";
    }

    @Test
    @Timeout(value = 180, unit = TimeUnit.SECONDS)
    void tumbleWindowCountPerKeyFromJsonToJson() throws Exception {
        try (NadiServer server = NadiServer.start(); NadiClient client = new NadiClient(server.controller())) {
            client.createStream("sql", "clicks", 3);
            client.createStream("sql", "counts", 2);
            // 3,000 clicks of 7 users over about 3.5 minutes, each user's clicks in time order.
            LocalDateTime base = LocalDateTime.of(2026, 1, 1, 12, 0);
            Random random = new Random(42);
            Map<String, Long> expected = new HashMap<>();
            try (RoutedWriter w = RoutedWriter.forStream(client, StreamId.parse("sql/clicks"))) {
                long[] last = new long[7];
                for (int i = 0; i < 3_000; i++) {
                    int u = random.nextInt(7);
                    last[u] = Math.min(299_999, last[u] + random.nextInt(1_000));
                    LocalDateTime ts = base.plusNanos(last[u] * 1_000_000L);
                    String user = "u" + u;
                    w.write(user, ("{\"user_id\":\"" + user + "\",\"ts\":\"" + TS.format(ts) + "\",\"page\":\"p" + i + "\"}")
                            .getBytes(StandardCharsets.UTF_8));
                    LocalDateTime window = base.plusSeconds((last[u] / 10_000) * 10);
                    expected.merge(user + "@" + WIN.format(window), 1L, Long::sum);
                }
                w.flush();
            }

            TableEnvironment t = tableEnv();
            t.executeSql("CREATE TABLE clicks (user_id STRING, ts TIMESTAMP(3), page STRING, "
                    + "WATERMARK FOR ts AS ts - INTERVAL '1' SECOND) "
                    + with(server, "sql/clicks", "json", ", 'scan.bounded' = 'true'"));
            t.executeSql("CREATE TABLE counts (user_id STRING, window_start STRING, cnt BIGINT) "
                    + with(server, "sql/counts", "json", ", 'sink.routing-key.field' = 'user_id'"));
            long t0 = System.nanoTime();
            t.executeSql("INSERT INTO counts "
                    + "SELECT user_id, DATE_FORMAT(window_start, 'yyyy-MM-dd HH:mm:ss'), COUNT(*) "
                    + "FROM TABLE(TUMBLE(TABLE clicks, DESCRIPTOR(ts), INTERVAL '10' SECOND)) "
                    + "GROUP BY user_id, window_start, window_end").await(120, TimeUnit.SECONDS);
            long ms = (System.nanoTime() - t0) / 1_000_000;

            Pattern row = Pattern.compile("\\{\"user_id\":\"(u\\d)\",\"window_start\":\"([^\"]+)\",\"cnt\":(\\d+)}");
            Map<String, Long> actual = new HashMap<>();
            List<String> lines = server.cli("read", "sql/counts", "--from-start", "--idle-timeout", "2").lines().toList();
            for (String line : lines) {
                Matcher m = row.matcher(line);
                assertTrue(m.matches(), "unexpected output row " + line);
                Long before = actual.put(m.group(1) + "@" + m.group(2), Long.parseLong(m.group(3)));
                assertEquals(null, before, "window emitted twice: " + line);
            }
            assertEquals(expected, actual);
            System.out.printf("sql: %d window counts of 3000 clicks checked, job %d ms%n", actual.size(), ms);
        }
    }

    @Test
    @Timeout(value = 180, unit = TimeUnit.SECONDS)
    void csvRoundTripAndOptionErrors() throws Exception {
        try (NadiServer server = NadiServer.start(); NadiClient client = new NadiClient(server.controller())) {
            client.createStream("sql", "people", 2);
            TableEnvironment t = tableEnv();
            t.executeSql("CREATE TABLE people (name STRING, age INT) "
                    + with(server, "sql/people", "csv", ", 'scan.bounded' = 'true', 'sink.routing-key.field' = 'name', "
                    + "'sink.delivery-guarantee' = 'at-least-once'"));
            t.executeSql("INSERT INTO people VALUES ('ada', 36), ('grace', 85), ('alan', 41), ('ada', 37)")
                    .await(60, TimeUnit.SECONDS);
            List<String> raw = server.cli("read", "sql/people", "--from-start", "--idle-timeout", "2").lines().toList();
            assertEquals(Set.of("ada,36", "grace,85", "alan,41", "ada,37"), new HashSet<>(raw));
            assertEquals(4, raw.size());
            // Same key, same segment: ada's rows in the order inserted.
            assertTrue(raw.indexOf("ada,36") < raw.indexOf("ada,37"), raw.toString());

            List<String> read = new ArrayList<>();
            try (CloseableIterator<Row> rows = t.executeSql("SELECT name, age FROM people").collect()) {
                rows.forEachRemaining(r -> read.add(r.getField(0) + "," + r.getField(1)));
            }
            assertEquals(new HashSet<>(raw), new HashSet<>(read));
            assertEquals(4, read.size());

            t.executeSql("CREATE TABLE bad (name STRING) " + with(server, "sql/people", "csv",
                    ", 'sink.routing-key.field' = 'nope'"));
            ValidationException e = org.junit.jupiter.api.Assertions.assertThrows(ValidationException.class,
                    () -> t.executeSql("INSERT INTO bad VALUES ('x')"));
            assertTrue(rootMessage(e).contains("'nope'"), rootMessage(e));
        }
    }

    private static String rootMessage(Throwable e) {
        StringBuilder b = new StringBuilder();
        for (Throwable c = e; c != null; c = c.getCause()) {
            b.append(c.getMessage()).append(" / ");
        }
        return b.toString();
    }
}
