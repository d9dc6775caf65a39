package io.nadi.flink;

import io.nadi.flink.sink.NadiSerializationSchema;
import io.nadi.flink.sink.NadiSink;
import java.time.Duration;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import org.apache.flink.api.common.serialization.SimpleStringSchema;
import org.apache.flink.configuration.Configuration;
import org.apache.flink.configuration.RestartStrategyOptions;
import org.apache.flink.configuration.TaskManagerOptions;
import org.apache.flink.connector.base.DeliveryGuarantee;
import org.apache.flink.core.execution.JobClient;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;

/** Shared set-up of the in-JVM MiniCluster jobs of the tests. */
final class FlinkJobs {
    private FlinkJobs() {}

    /** A local environment: parallelism 2, checkpoints every {@code checkpointMs}, 3 restarts. */
    static StreamExecutionEnvironment env(long checkpointMs) {
        Configuration conf = new Configuration();
        conf.set(RestartStrategyOptions.RESTART_STRATEGY, "fixed-delay");
        conf.set(RestartStrategyOptions.RESTART_STRATEGY_FIXED_DELAY_ATTEMPTS, 3);
        conf.set(RestartStrategyOptions.RESTART_STRATEGY_FIXED_DELAY_DELAY, Duration.ofMillis(200));
        conf.set(TaskManagerOptions.NUM_TASK_SLOTS, 4);
        StreamExecutionEnvironment env = StreamExecutionEnvironment.getExecutionEnvironment(conf);
        env.setParallelism(2);
        env.enableCheckpointing(checkpointMs);
        return env;
    }

    /** Cancels a job and waits until it has ended (its tasks closed). */
    static void cancel(JobClient job) throws Exception {
        job.cancel().get(30, TimeUnit.SECONDS);
        try {
            job.getJobExecutionResult().get(30, TimeUnit.SECONDS);
        } catch (ExecutionException cancelled) {
            // expected: the job was cancelled
        }
    }

    /** An exactly-once sink of {@code KEY,SEQ} lines, routed by KEY. */
    static NadiSink<String> keyedSink(String controller, String stream) {
        return NadiSink.<String>builder()
                .controller(controller)
                .stream(stream)
                .serializer(NadiSerializationSchema.of(new SimpleStringSchema(), KeyedEvents::keyOf))
                .deliveryGuarantee(DeliveryGuarantee.EXACTLY_ONCE)
                .transactionLease(Duration.ofSeconds(60))
                .maxBufferedBytes(8 * 1024) // events reach the store between checkpoints too
                .build();
    }
}
