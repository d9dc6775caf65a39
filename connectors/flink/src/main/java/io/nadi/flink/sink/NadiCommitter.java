package io.nadi.flink.sink;

import io.nadi.flink.client.ClientSecurity;
import io.nadi.flink.client.NadiClient;
import io.nadi.flink.client.NadiException;
import java.util.Collection;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Commits pre-committed transactions once Flink's checkpoint is complete. Flink commits again
 * after a restore, so a commit must be idempotent: Nadi answers success for a transaction that
 * is already committed (or committing, which the controller always finishes). A transaction that
 * was aborted (its lease ran out before the commit) fails the job with a clear error: its events
 * are lost, and the lease must be raised above checkpoint interval plus recovery time.
 */
final class NadiCommitter implements org.apache.flink.api.connector.sink2.Committer<NadiCommittable> {
    private static final Logger LOG = LoggerFactory.getLogger(NadiCommitter.class);

    private final NadiClient client;
    private final long leaseMs;

    NadiCommitter(String controller, ClientSecurity security, long leaseMs) {
        this.client = new NadiClient(controller, security);
        this.leaseMs = leaseMs;
    }

    @Override
    public void commit(Collection<CommitRequest<NadiCommittable>> requests) {
        for (CommitRequest<NadiCommittable> r : requests) {
            NadiCommittable c = r.getCommittable();
            try {
                client.commitTxn(c.txnId);
                LOG.debug("committed {}", c);
            } catch (NadiException e) {
                if (e.isRetryable()) {
                    r.retryLater();
                } else if (e.reason().equals("TXN_ABORTED")) {
                    r.signalFailedWithKnownReason(new NadiException("TXN_ABORTED", c + " was aborted before Flink"
                            + " could commit it (its lease of " + leaseMs + " ms ran out?); its events are lost."
                            + " Set the transaction lease above checkpoint interval plus recovery time",
                            e.metadata(), e));
                } else if (e.reason().equals("TXN_NOT_FOUND")) {
                    r.signalFailedWithKnownReason(new NadiException("TXN_NOT_FOUND", c + " is unknown to the"
                            + " controller (finished transactions are remembered for 24 h)", e.metadata(), e));
                } else {
                    r.signalFailedWithUnknownReason(e);
                }
            }
        }
    }

    @Override
    public void close() {
        client.close();
    }
}
