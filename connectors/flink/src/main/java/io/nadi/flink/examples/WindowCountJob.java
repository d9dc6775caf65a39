package io.nadi.flink.examples;

import io.nadi.flink.sink.NadiSerializationSchema;
import io.nadi.flink.sink.NadiSink;
import io.nadi.flink.source.NadiSource;
import java.time.Duration;
import java.util.HashMap;
import java.util.Map;
import org.apache.flink.api.common.eventtime.WatermarkStrategy;
import org.apache.flink.api.common.serialization.SimpleStringSchema;
import org.apache.flink.connector.base.DeliveryGuarantee;
import org.apache.flink.streaming.api.datastream.DataStream;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.streaming.api.functions.windowing.ProcessWindowFunction;
import org.apache.flink.streaming.api.windowing.assigners.TumblingEventTimeWindows;
import org.apache.flink.streaming.api.windowing.windows.TimeWindow;
import org.apache.flink.util.Collector;

/**
 * An event-time job on the writers' watermarks: counts the events of each key per tumbling
 * window. An event is a line {@code KEY,TIME_MS} (its event time after the comma); the writers
 * note their time ({@code RoutedWriter.noteTime}, the Rust {@code EventWriter::note_time}), and
 * the source emits the stream's writers' watermarks ({@code watermarksFromWriters()}), so a
 * window fires once every writer still active has promised not to write into it, and none of
 * its events is late. Output lines: {@code KEY,WINDOW_START_MS,COUNT}, routed by KEY.
 *
 * <pre>
 * flink run -c io.nadi.flink.examples.WindowCountJob nadi-flink-connector-0.1.0.jar \
 *     --controller http://127.0.0.1:9090 --input demo/readings --output demo/counts [--window-ms 1000]
 * </pre>
 *
 * The token, if the servers require one, comes from {@code NADI_TOKEN} as in {@link KeyedCopyJob}.
 */
public final class WindowCountJob {
    private WindowCountJob() {}

    public static void main(String[] args) throws Exception {
        Map<String, String> opts = new HashMap<>();
        for (int i = 0; i + 1 < args.length; i += 2) {
            if (!args[i].startsWith("--")) {
                throw new IllegalArgumentException("unexpected argument " + args[i]);
            }
            opts.put(args[i].substring(2), args[i + 1]);
        }
        if (args.length % 2 != 0) {
            throw new IllegalArgumentException("unexpected argument " + args[args.length - 1]);
        }
        String controller = opts.getOrDefault("controller", "http://127.0.0.1:9090");
        String input = require(opts, "input");
        String output = require(opts, "output");
        String token = System.getenv("NADI_TOKEN");
        if (token != null && token.isBlank()) {
            token = null;
        }

        StreamExecutionEnvironment env = StreamExecutionEnvironment.getExecutionEnvironment();
        env.enableCheckpointing(Long.parseLong(opts.getOrDefault("checkpoint-ms", "1000")));
        NadiSource<String> source = NadiSource.<String>builder()
                .controller(controller).token(token).stream(input)
                .deserializer(new SimpleStringSchema())
                .watermarksFromWriters()
                .build();
        NadiSink<String> sink = NadiSink.<String>builder()
                .controller(controller).token(token).stream(output)
                .serializer(NadiSerializationSchema.of(new SimpleStringSchema(), KeyedCopyJob::keyOf))
                .deliveryGuarantee(DeliveryGuarantee.EXACTLY_ONCE)
                .build();
        Duration window = Duration.ofMillis(Long.parseLong(opts.getOrDefault("window-ms", "1000")));
        countPerWindow(env, source, window).sinkTo(sink).name("nadi:" + output);
        env.execute("nadi window count " + input + " -> " + output);
    }

    /**
     * The pipeline: {@code KEY,TIME_MS} lines from {@code source} (built with
     * {@code watermarksFromWriters()}) → {@code KEY,WINDOW_START_MS,COUNT} per tumbling window.
     * The strategy assigns timestamps only: the watermarks are the writers'.
     */
    public static DataStream<String> countPerWindow(StreamExecutionEnvironment env, NadiSource<String> source,
            Duration window) {
        WatermarkStrategy<String> timestamps = WatermarkStrategy.<String>noWatermarks()
                .withTimestampAssigner((line, previous) -> timeOf(line));
        return env.fromSource(source, timestamps, "nadi-events")
                .keyBy(KeyedCopyJob::keyOf)
                .window(TumblingEventTimeWindows.of(window))
                .process(new Count())
                .name("count per key and window");
    }

    /** The event time of a {@code KEY,TIME_MS} line. */
    public static long timeOf(String line) {
        return Long.parseLong(line.substring(line.indexOf(',') + 1).trim());
    }

    /** Emits {@code KEY,WINDOW_START_MS,COUNT} when a window fires. */
    private static final class Count extends ProcessWindowFunction<String, String, String, TimeWindow> {
        @Override
        public void process(String key, Context ctx, Iterable<String> events, Collector<String> out) {
            long n = 0;
            for (String ignored : events) {
                n++;
            }
            out.collect(key + "," + ctx.window().getStart() + "," + n);
        }
    }

    private static String require(Map<String, String> opts, String name) {
        String v = opts.get(name);
        if (v == null) {
            throw new IllegalArgumentException("missing --" + name + " SCOPE/STREAM");
        }
        return v;
    }
}
