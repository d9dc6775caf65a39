package io.nadi.flink.client;

import io.grpc.stub.ClientCalls;
import io.grpc.stub.ClientResponseObserver;
import io.nadi.proto.segment.v1.ReadRequest;
import io.nadi.proto.segment.v1.ReadResponse;
import io.nadi.proto.segment.v1.SegmentStoreGrpc;

/** Starts server-streaming segment reads on a client's channels (used by the source). */
public final class SegmentReads {
    private SegmentReads() {}

    /** Starts {@code Read(req)} on the store at {@code endpoint}; responses go to {@code observer}. */
    public static void read(NadiClient client, String endpoint, ReadRequest req,
            ClientResponseObserver<ReadRequest, ReadResponse> observer) {
        ClientCalls.asyncServerStreamingCall(
                client.channel(endpoint).newCall(SegmentStoreGrpc.getReadMethod(), io.grpc.CallOptions.DEFAULT),
                req, observer);
    }
}
