package io.nadi.flink.table;

import io.nadi.flink.client.ClientSecurity;
import io.nadi.flink.client.StreamId;
import io.nadi.flink.sink.NadiSerializationSchema;
import io.nadi.flink.sink.NadiSink;
import java.time.Duration;
import java.util.List;
import org.apache.flink.api.common.serialization.SerializationSchema;
import org.apache.flink.connector.base.DeliveryGuarantee;
import org.apache.flink.table.connector.ChangelogMode;
import org.apache.flink.table.connector.format.EncodingFormat;
import org.apache.flink.table.connector.sink.DynamicTableSink;
import org.apache.flink.table.connector.sink.SinkV2Provider;
import org.apache.flink.table.data.RowData;
import org.apache.flink.table.types.DataType;
import org.apache.flink.table.types.logical.LogicalType;

/** The sink side of a {@code 'connector' = 'nadi'} table: a {@link NadiSink} of rows. */
final class NadiTableSink implements DynamicTableSink {
    private final String controller;
    private final ClientSecurity security;
    private final StreamId stream;
    private final EncodingFormat<SerializationSchema<RowData>> format;
    private final DataType physical;
    private final DeliveryGuarantee guarantee;
    private final Duration lease;
    /** Column of the routing key, -1 for none. */
    private final int keyIndex;

    NadiTableSink(String controller, ClientSecurity security, StreamId stream,
            EncodingFormat<SerializationSchema<RowData>> format, DataType physical, DeliveryGuarantee guarantee,
            Duration lease, int keyIndex) {
        this.controller = controller;
        this.security = security;
        this.stream = stream;
        this.format = format;
        this.physical = physical;
        this.guarantee = guarantee;
        this.lease = lease;
        this.keyIndex = keyIndex;
    }

    @Override
    public ChangelogMode getChangelogMode(ChangelogMode requested) {
        return format.getChangelogMode();
    }

    @Override
    public SinkRuntimeProvider getSinkRuntimeProvider(Context context) {
        SerializationSchema<RowData> rows = format.createRuntimeEncoder(context, physical);
        NadiSerializationSchema.KeyExtractor<RowData> keys = null;
        if (keyIndex >= 0) {
            List<LogicalType> types = physical.getLogicalType().getChildren();
            RowData.FieldGetter getter = RowData.createFieldGetter(types.get(keyIndex), keyIndex);
            keys = row -> {
                Object v = getter.getFieldOrNull(row);
                return v == null ? null : v.toString();
            };
        }
        return SinkV2Provider.of(NadiSink.<RowData>builder()
                .controller(controller)
                .security(security)
                .stream(stream.toString())
                .serializer(NadiSerializationSchema.of(rows, keys))
                .deliveryGuarantee(guarantee)
                .transactionLease(lease)
                .build());
    }

    @Override
    public DynamicTableSink copy() {
        return new NadiTableSink(controller, security, stream, format, physical, guarantee, lease, keyIndex);
    }

    @Override
    public String asSummaryString() {
        return "Nadi(" + stream + ")";
    }
}
