package io.nadi.flink;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.nadi.flink.client.NadiClient;
import io.nadi.flink.client.RoutedWriter;
import io.nadi.flink.client.StreamId;
import io.nadi.flink.examples.WindowCountJob;
import io.nadi.flink.source.NadiSource;
import io.nadi.proto.controller.v1.SegmentLocation;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.BooleanSupplier;
import org.apache.flink.api.common.JobStatus;
import org.apache.flink.api.common.serialization.SimpleStringSchema;
import org.apache.flink.core.execution.JobClient;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.streaming.api.functions.ProcessFunction;
import org.apache.flink.streaming.api.functions.sink.legacy.DiscardingSink;
import org.apache.flink.util.Collector;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * Writers' watermarks (issue 22, acceptance): two writers note their event times; the example
 * job {@link WindowCountJob} counts events per key in 1 s tumbling event-time windows over a
 * source with {@code watermarksFromWriters()}.
 *
 * <pre>
 *   writer A: notes time 0 first (a writer joining below the stream's watermark writes late)
 *   writer B: 20 events with times in [0, 1.4 s), notes 1.5 s, then goes idle (idle timeout 4 s)
 *   writer A: steps of 10 events in [100k, 100k + 100) ms, each followed by note(100(k+1)),
 *             up to 12 s of event time, paced (about 2 event-seconds per wall second)
 *   the stream is split while A writes
 * </pre>
 *
 * Checks, while the job runs (unbounded): every fired window's count equals the number of
 * events written into it (none late, none fired early), each window fires once; a window
 * ending after B's noted time fires only after B's idle timeout passed (its output's wall time
 * is at least B's note + 4 s); and after the timeout every window up to A's last noted time
 * fires without B writing or noting anything. About 20 s. Also: a sink with
 * {@code noteWatermarks()} notes Flink's watermark on its output stream (about 10 s).
 */
class WriterWatermarksITCase {
    private static final long BASE = 1_000_000_000L; // event times: any epoch the writers agree on
    private static final long B_NOTE = BASE + 1_500;
    private static final Duration B_IDLE = Duration.ofSeconds(4);
    private static final int A_STEPS = 120;

    /** Window outputs {@code KEY,WINDOW_START,COUNT} with the wall-clock time they were seen. */
    static final ConcurrentLinkedQueue<String> FIRED = new ConcurrentLinkedQueue<>();
    static final Map<String, Long> FIRED_AT = new ConcurrentHashMap<>();

    @Test
    @Timeout(value = 150, unit = TimeUnit.SECONDS)
    void windowsFireOnTheWritersWatermarksAndAnIdleWriterStopsHoldingThem() throws Exception {
        FIRED.clear();
        FIRED_AT.clear();
        try (NadiServer server = NadiServer.start(); NadiClient client = new NadiClient(server.controller())) {
            client.createStream("it", "wm", 2);
            StreamId stream = StreamId.parse("it/wm");
            Map<String, Long> expected = new ConcurrentHashMap<>(); // KEY@WINDOW_START → events written

            StreamExecutionEnvironment env = FlinkJobs.env(500);
            NadiSource<String> source = NadiSource.<String>builder().controller(server.controller())
                    .stream("it/wm").deserializer(new SimpleStringSchema()).watermarksFromWriters().build();
            WindowCountJob.countPerWindow(env, source, Duration.ofSeconds(1))
                    .process(new Record()).setParallelism(1)
                    .addSink(new DiscardingSink<>()).setParallelism(1);
            JobClient job = env.executeAsync("writer-watermarks-it");
            await("the job to run", 30, () -> job.getJobStatus().join() == JobStatus.RUNNING);

            // A notes its start time before anyone writes: a writer that has not noted does not
            // hold the watermark back, and one joining below the stream's watermark writes late.
            RoutedWriter aWriter = RoutedWriter.forStream(client, stream);
            aWriter.noteTime(BASE);
            RoutedWriter b = RoutedWriter.forStream(client, stream).idleTimeout(B_IDLE);
            for (int i = 0; i < 20; i++) {
                write(b, "b" + (i % 2), BASE + i * 70L, expected);
            }
            long bNoteCalled = System.currentTimeMillis();
            b.noteTime(B_NOTE); // flushes: B's events are acknowledged

            // A: writes and notes, paced, following the split below.
            AtomicLong aNoted = new AtomicLong(-1);
            CompletableFuture<Void> a = CompletableFuture.runAsync(() -> {
                try (RoutedWriter w = aWriter) {
                    for (int k = 0; k < A_STEPS; k++) {
                        for (int j = 0; j < 10; j++) {
                            write(w, "a" + (j % 5), BASE + k * 100L + j * 10L, expected);
                        }
                        long t = BASE + (k + 1) * 100L;
                        w.noteTime(t);
                        aNoted.set(t);
                        Thread.sleep(50);
                    }
                } catch (Exception e) {
                    throw new RuntimeException(e);
                }
            });

            // The first window [0, 1 s) fires: B's note (1.5 s) and A's are past it.
            await("the first window to fire", 30, () -> firedWindowStarts().contains(BASE) || a.isCompletedExceptionally());
            long held = System.currentTimeMillis();
            assertTrue(held < bNoteCalled + B_IDLE.toMillis(), "the first window fired only after B's idle timeout ("
                    + (held - bNoteCalled) + " ms after B's note): the check below would prove nothing");

            // Split the stream while A writes (A follows the successors, the source too).
            SegmentLocation first = client.activeSegments("it", "wm").get(0);
            server.cli("stream", "scale", "it/wm", "--split", Long.toString(first.getSegment().getId()));

            a.get(60, TimeUnit.SECONDS);
            long aLast = aNoted.get();
            // After B's timeout, the watermark follows A alone: every window ending at or before
            // A's last note fires, while the job runs.
            Map<String, Long> due = new TreeMap<>();
            for (Map.Entry<String, Long> e : expected.entrySet()) {
                long start = Long.parseLong(e.getKey().substring(e.getKey().indexOf('@') + 1));
                if (start + 1_000 <= aLast) {
                    due.put(e.getKey(), e.getValue());
                }
            }
            await("every window up to A's last note to fire", 60, () -> firedWindows().containsAll(due.keySet()));
            assertEquals(JobStatus.RUNNING, job.getJobStatus().get(10, TimeUnit.SECONDS));
            List<String> fired = new ArrayList<>(FIRED);
            FlinkJobs.cancel(job);
            b.close();

            Map<String, Long> actual = new TreeMap<>();
            for (String line : fired) {
                String[] f = line.split(",");
                Long before = actual.put(f[0] + "@" + f[1], Long.parseLong(f[2]));
                assertEquals(null, before, "window fired twice: " + line);
                long start = Long.parseLong(f[1]);
                if (start + 1_000 > B_NOTE) {
                    long at = FIRED_AT.get(line);
                    assertTrue(at >= bNoteCalled + B_IDLE.toMillis(), "window " + line + " ends after B's note but"
                            + " fired " + (at - bNoteCalled) + " ms after it, before B's idle timeout");
                }
            }
            // Exactly the due windows, each with every event written into it.
            assertEquals(due, actual);
            assertEquals(3, client.activeSegments("it", "wm").size(), "the stream was split");
            System.out.printf("writer watermarks: %d windows fired with exact counts; first window %d ms after B's"
                    + " note%n", actual.size(), held - bNoteCalled);
        }
    }

    /**
     * A job writing with an at-least-once sink and {@code noteWatermarks()}: its writers note
     * Flink's watermark (+1) on the output stream, whose watermark reaches the input's last event
     * times while the job runs; the watermark's cut lies within the output's segments; a cancelled
     * job's writers say they are closed (with a 60 s idle timeout, nothing else ends them soon).
     */
    @Test
    @Timeout(value = 120, unit = TimeUnit.SECONDS)
    void aSinkNotesFlinksWatermarkAsItsWritersTime() throws Exception {
        try (NadiServer server = NadiServer.start(); NadiClient client = new NadiClient(server.controller())) {
            client.createStream("it", "in", 2);
            client.createStream("it", "out", 2);
            int events = 2_000;
            try (RoutedWriter w = RoutedWriter.forStream(client, StreamId.parse("it/in"))) {
                for (int i = 0; i < events; i++) {
                    write(w, "k" + (i % 5), BASE + i * 10L, new java.util.HashMap<>());
                }
                w.flush();
            }
            long last = BASE + (events - 1) * 10L;
            StreamExecutionEnvironment env = FlinkJobs.env(300);
            env.getConfig().setAutoWatermarkInterval(50);
            NadiSource<String> source = NadiSource.<String>builder().controller(server.controller())
                    .stream("it/in").deserializer(new SimpleStringSchema()).build();
            env.fromSource(source, org.apache.flink.api.common.eventtime.WatermarkStrategy.<String>forMonotonousTimestamps()
                            .withTimestampAssigner((line, ts) -> WindowCountJob.timeOf(line)), "in")
                    .setParallelism(1) // one reader holds both segments: no reader without splits holds the watermark
                    .sinkTo(io.nadi.flink.sink.NadiSink.<String>builder().controller(server.controller()).stream("it/out")
                            .serializer(io.nadi.flink.sink.NadiSerializationSchema.of(new SimpleStringSchema(),
                                    KeyedEvents::keyOf))
                            .deliveryGuarantee(org.apache.flink.connector.base.DeliveryGuarantee.AT_LEAST_ONCE)
                            .noteWatermarks().writerIdleTimeout(Duration.ofSeconds(60)).build());
            JobClient job = env.executeAsync("sink-notes-it");

            // Each split's last watermark is its last event's time - 1 and the sink notes that + 1:
            // each segment's last event is at or after key k0's last one, the 5th-last event.
            long[] highest = {-1};
            io.nadi.proto.controller.v1.Watermark[] top = {null};
            await("the output's watermark to reach the input's last times", 60, () -> {
                try {
                    var r = client.getWatermarks("it", "out", 0);
                    if (r.getWatermarksCount() > 0) {
                        top[0] = r.getWatermarks(r.getWatermarksCount() - 1);
                        highest[0] = top[0].getTimeMs();
                    }
                    return highest[0] >= last - 40;
                } catch (Exception e) {
                    throw new RuntimeException(e);
                }
            });
            assertTrue(highest[0] <= last + 1, "watermark " + highest[0] + " above the last event time " + last);
            for (var c : top[0].getCutList()) {
                SegmentLocation l = client.locate("it", "out", List.of(c.getSegmentId())).get(c.getSegmentId());
                long length = client.segmentInfo(l.getEndpoint(), l.getSegment().getQualifiedName()).getLength();
                assertTrue(c.getOffset() <= length, "cut offset " + c.getOffset() + " past the length " + length);
            }
            assertEquals(2, client.getWatermarks("it", "out", 0).getActiveWriters(), "one noting writer per subtask");
            FlinkJobs.cancel(job);
            await("the cancelled job's writers to be closed", 10, () -> {
                try {
                    return client.getWatermarks("it", "out", 0).getActiveWriters() == 0;
                } catch (Exception e) {
                    throw new RuntimeException(e);
                }
            });
        }
    }

    /**
     * SQL with {@code 'scan.watermarks' = 'writers'}: a TUMBLE count per key fires the windows the
     * writer's note covers (its WATERMARK clause only names the event-time column), with exact
     * counts, while the job runs.
     */
    @Test
    @Timeout(value = 120, unit = TimeUnit.SECONDS)
    void sqlWindowsOnTheWritersWatermarks() throws Exception {
        try (NadiServer server = NadiServer.start(); NadiClient client = new NadiClient(server.controller())) {
            client.createStream("it", "sqlwm", 2);
            Map<String, Long> expected = new TreeMap<>();
            try (RoutedWriter w = RoutedWriter.forStream(client, StreamId.parse("it/sqlwm"))) {
                for (int i = 0; i < 45; i++) { // times 0 .. 4.4 s: windows 0-3 complete, 4 not
                    write(w, "k" + (i % 3), BASE + i * 100L, expected);
                }
                w.noteTime(BASE + 4_000); // windows ending at or before 4 s may fire
                org.apache.flink.configuration.Configuration conf = new org.apache.flink.configuration.Configuration();
                conf.setString("parallelism.default", "2");
                conf.setString("taskmanager.numberOfTaskSlots", "4");
                org.apache.flink.table.api.TableEnvironment t = org.apache.flink.table.api.TableEnvironment.create(
                        org.apache.flink.table.api.EnvironmentSettings.newInstance().inStreamingMode()
                                .withConfiguration(conf).build());
                t.executeSql("CREATE TABLE readings (k STRING, t BIGINT, ts AS TO_TIMESTAMP_LTZ(t, 3), "
                        + "WATERMARK FOR ts AS ts) WITH ('connector' = 'nadi', 'controller' = '" + server.controller()
                        + "', 'stream' = 'it/sqlwm', 'format' = 'csv', 'scan.watermarks' = 'writers')");
                Map<String, Long> actual = new java.util.concurrent.ConcurrentSkipListMap<>();
                try (org.apache.flink.util.CloseableIterator<org.apache.flink.types.Row> rows = t.executeSql(
                        "SELECT k, MIN(t), COUNT(*) FROM TABLE(TUMBLE(TABLE readings, DESCRIPTOR(ts), INTERVAL '1' SECOND)) "
                        + "GROUP BY k, window_start, window_end").collect()) {
                    // Read on another thread: the iterator's hasNext() ignores interrupts, so the
                    // deadline is kept here, and closing the iterator (the job) ends the read.
                    CompletableFuture<Void> read = CompletableFuture.runAsync(() -> {
                        while (actual.size() < 12 && rows.hasNext()) { // 3 keys x windows 0..3
                            org.apache.flink.types.Row r = rows.next();
                            long min = (Long) r.getField(1);
                            actual.put(r.getField(0) + "@" + (min - Math.floorMod(min, 1_000L)), (Long) r.getField(2));
                        }
                    });
                    try {
                        read.get(60, TimeUnit.SECONDS);
                    } catch (java.util.concurrent.TimeoutException e) {
                        throw new AssertionError("windows fired within 60 s: " + actual, e);
                    }
                }
                expected.keySet().removeIf(k -> Long.parseLong(k.substring(k.indexOf('@') + 1)) >= BASE + 4_000);
                assertEquals(expected, actual);
            }
        }
    }

    private static void write(RoutedWriter w, String key, long time, Map<String, Long> expected) {
        w.write(key, (key + "," + time).getBytes(StandardCharsets.UTF_8));
        expected.merge(key + "@" + (time - Math.floorMod(time, 1_000L)), 1L, Long::sum);
    }

    /** {@code KEY@WINDOW_START} of the windows fired so far. */
    private static java.util.Set<String> firedWindows() {
        java.util.Set<String> windows = new java.util.HashSet<>();
        for (String line : FIRED) {
            String[] f = line.split(",");
            windows.add(f[0] + "@" + f[1]);
        }
        return windows;
    }

    private static java.util.Set<Long> firedWindowStarts() {
        java.util.Set<Long> starts = new java.util.HashSet<>();
        for (String line : FIRED) {
            starts.add(Long.parseLong(line.split(",")[1]));
        }
        return starts;
    }

    private static void await(String what, int seconds, BooleanSupplier done) throws InterruptedException {
        long deadline = System.currentTimeMillis() + seconds * 1000L;
        while (!done.getAsBoolean()) {
            if (System.currentTimeMillis() > deadline) {
                throw new AssertionError("timed out after " + seconds + " s waiting for " + what + "; fired: " + FIRED);
            }
            Thread.sleep(20);
        }
    }

    /** Records each window output with the wall-clock time it arrived. */
    private static final class Record extends ProcessFunction<String, String> {
        @Override
        public void processElement(String line, Context ctx, Collector<String> out) {
            FIRED_AT.put(line, System.currentTimeMillis());
            FIRED.add(line);
            out.collect(line);
        }
    }
}
