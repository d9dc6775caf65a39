package io.nadi.flink.sink;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.nadi.flink.NadiServer;
import io.nadi.flink.client.ClientSecurity;
import io.nadi.flink.client.NadiClient;
import io.nadi.flink.client.NadiException;
import io.nadi.flink.client.RoutedWriter;
import io.nadi.flink.client.StreamId;
import io.nadi.proto.controller.v1.TxnInfo;
import io.nadi.proto.controller.v1.TxnState;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.apache.flink.api.common.serialization.SimpleStringSchema;
import org.apache.flink.api.connector.sink2.Committer;
import org.apache.flink.connector.base.DeliveryGuarantee;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * The sink's transaction rules against a real store: the committer treats an already committed
 * transaction as success and reports an aborted one; a writer restored from a checkpoint aborts
 * the transaction that was open after it; an unknown stream is a clear error.
 */
class SinkTransactionsITCase {

    /** Records what the committer said about one committable. */
    static final class Request implements Committer.CommitRequest<NadiCommittable> {
        final NadiCommittable committable;
        Throwable failed;
        boolean retry;

        Request(String txnId) {
            committable = new NadiCommittable(txnId, "it/s");
        }

        @Override
        public NadiCommittable getCommittable() {
            return committable;
        }

        @Override
        public int getNumberOfRetries() {
            return 0;
        }

        @Override
        public void signalFailedWithKnownReason(Throwable t) {
            failed = t;
        }

        @Override
        public void signalFailedWithUnknownReason(Throwable t) {
            failed = t;
        }

        @Override
        public void retryLater() {
            retry = true;
        }

        @Override
        public void updateAndRetryLater(NadiCommittable c) {
            retry = true;
        }

        @Override
        public void signalAlreadyCommitted() {}
    }

    private static TxnInfo txnWithEvents(NadiClient client, int n) throws NadiException {
        TxnInfo txn = client.beginTxn("it", "s", 60_000);
        try (RoutedWriter w = RoutedWriter.forTransaction(client, txn)) {
            for (int i = 0; i < n; i++) {
                w.write("key" + i, ("event " + i).getBytes(StandardCharsets.UTF_8));
            }
            w.flush();
        }
        return txn;
    }

    @Test
    @Timeout(value = 60, unit = TimeUnit.SECONDS)
    void commitIsIdempotentAndRestoreAbortsTheOpenTransaction() throws Exception {
        try (NadiServer server = NadiServer.start(); NadiClient client = new NadiClient(server.controller())) {
            client.createStream("it", "s", 2);
            TxnInfo committed = txnWithEvents(client, 10);
            TxnInfo open = txnWithEvents(client, 7);
            TxnInfo aborted = txnWithEvents(client, 3);
            client.abortTxn(aborted.getTxnId());

            try (NadiCommitter committer = new NadiCommitter(server.controller(), ClientSecurity.none(), 60_000)) {
                Request first = new Request(committed.getTxnId());
                Request again = new Request(committed.getTxnId());
                committer.commit(List.of(first));
                committer.commit(List.of(again)); // Flink re-commits after a restore
                assertNull(first.failed);
                assertNull(again.failed);
                assertEquals(false, again.retry);
                Request lost = new Request(aborted.getTxnId());
                committer.commit(List.of(lost));
                assertTrue(lost.failed instanceof NadiException, String.valueOf(lost.failed));
                assertEquals("TXN_ABORTED", ((NadiException) lost.failed).reason());
                assertTrue(lost.failed.getMessage().contains("lease"), lost.failed.getMessage());
            }

            // A writer restored from a checkpoint whose state names `open`: it aborts it.
            NadiSerializationSchema<String> schema = NadiSerializationSchema.of(new SimpleStringSchema(), null);
            new NadiSinkWriter<>(server.controller(), ClientSecurity.none(), StreamId.parse("it/s"), schema,
                    DeliveryGuarantee.EXACTLY_ONCE, 60_000, 1 << 20, List.of(new NadiCommittable(open.getTxnId(), "it/s")))
                    .close();
            assertEquals(TxnState.TXN_STATE_ABORTED, client.getTxn(open.getTxnId()).getState());

            List<String> lines = server.cli("read", "it/s", "--from-start", "--idle-timeout", "1").lines().toList();
            assertEquals(10, lines.size(), "only the committed transaction's events, once: " + lines);
        }
    }

    @Test
    @Timeout(value = 60, unit = TimeUnit.SECONDS)
    void unknownStreamIsAClearError() throws Exception {
        try (NadiServer server = NadiServer.start(); NadiClient client = new NadiClient(server.controller())) {
            client.createStream("it", "s", 1);
            NadiSerializationSchema<String> schema = NadiSerializationSchema.of(new SimpleStringSchema(), null);
            NadiException e = assertThrows(NadiException.class, () -> new NadiSinkWriter<>(server.controller(),
                    ClientSecurity.none(), StreamId.parse("it/missing"), schema, DeliveryGuarantee.AT_LEAST_ONCE, 60_000,
                    1 << 20, List.of()));
            assertEquals("NOT_FOUND_STREAM", e.reason());
            assertTrue(e.getMessage().contains("it/missing"), e.getMessage());
        }
    }
}
