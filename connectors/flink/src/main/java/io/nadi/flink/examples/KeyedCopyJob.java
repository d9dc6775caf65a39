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
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;

/**
 * A complete job: copies the events of one Nadi stream into another, exactly once, keeping each
 * key's order. An event is a text line whose routing key is the text before the first comma.
 *
 * <pre>
 * flink run -c io.nadi.flink.examples.KeyedCopyJob nadi-flink-connector-0.1.0.jar \
 *     --controller http://127.0.0.1:9090 --input demo/orders --output demo/orders-copy [--bounded]
 * </pre>
 *
 * With servers that require a token ({@code --auth required}), the token is taken from
 * {@code NADI_TOKEN} in the environment of {@code flink run}, as the {@code nadi} CLI does (a
 * {@code --token} argument would show in process listings); its principal needs read on the
 * input and write on the output.
 *
 * With {@code --bounded} it copies what the input holds when the job starts, then ends;
 * otherwise it follows the input (and its scaling) until cancelled.
 */
public final class KeyedCopyJob {
    private KeyedCopyJob() {}

    public static void main(String[] args) throws Exception {
        Map<String, String> opts = new HashMap<>();
        for (int i = 0; i < args.length; i++) {
            if (args[i].equals("--bounded")) {
                opts.put("bounded", "true");
            } else if (args[i].startsWith("--") && i + 1 < args.length) {
                opts.put(args[i].substring(2), args[++i]);
            } else {
                throw new IllegalArgumentException("unexpected argument " + args[i]);
            }
        }
        String controller = opts.getOrDefault("controller", "http://127.0.0.1:9090");
        String input = require(opts, "input");
        String output = require(opts, "output");
        String token = System.getenv("NADI_TOKEN"); // read here, in `flink run`: the job graph carries it
        if (token != null && token.isBlank()) {
            token = null;
        }

        StreamExecutionEnvironment env = StreamExecutionEnvironment.getExecutionEnvironment();
        env.enableCheckpointing(Long.parseLong(opts.getOrDefault("checkpoint-ms", "1000")));

        NadiSource.Builder<String> source = NadiSource.<String>builder()
                .controller(controller)
                .token(token)
                .stream(input)
                .deserializer(new SimpleStringSchema());
        if (opts.containsKey("bounded")) {
            source.boundedAtTail();
        }
        NadiSink<String> sink = NadiSink.<String>builder()
                .controller(controller)
                .token(token)
                .stream(output)
                .serializer(NadiSerializationSchema.of(new SimpleStringSchema(), KeyedCopyJob::keyOf))
                .deliveryGuarantee(DeliveryGuarantee.EXACTLY_ONCE)
                .transactionLease(Duration.ofMinutes(10))
                .build();

        env.fromSource(source.build(), WatermarkStrategy.noWatermarks(), "nadi:" + input)
                .keyBy(KeyedCopyJob::keyOf) // one key, one sink subtask: its order holds end to end
                .sinkTo(sink)
                .name("nadi:" + output);
        env.execute("nadi keyed copy " + input + " -> " + output);
    }

    /** The routing key: the text before the first comma (the whole line without one). */
    static String keyOf(String line) {
        int comma = line.indexOf(',');
        return comma < 0 ? line : line.substring(0, comma);
    }

    private static String require(Map<String, String> opts, String name) {
        String v = opts.get(name);
        if (v == null) {
            throw new IllegalArgumentException("missing --" + name + " SCOPE/STREAM");
        }
        return v;
    }
}
