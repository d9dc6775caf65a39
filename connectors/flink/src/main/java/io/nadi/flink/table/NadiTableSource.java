package io.nadi.flink.table;

import io.nadi.flink.client.StreamId;
import io.nadi.flink.source.NadiSource;
import org.apache.flink.api.common.serialization.DeserializationSchema;
import org.apache.flink.table.connector.ChangelogMode;
import org.apache.flink.table.connector.format.DecodingFormat;
import org.apache.flink.table.connector.source.DynamicTableSource;
import org.apache.flink.table.connector.source.ScanTableSource;
import org.apache.flink.table.connector.source.SourceProvider;
import org.apache.flink.table.data.RowData;
import org.apache.flink.table.types.DataType;

/** The scan side of a {@code 'connector' = 'nadi'} table: a {@link NadiSource} of rows. */
final class NadiTableSource implements ScanTableSource {
    private final String controller;
    private final StreamId stream;
    private final DecodingFormat<DeserializationSchema<RowData>> format;
    private final DataType physical;
    private final boolean fromStart;
    private final boolean bounded;

    NadiTableSource(String controller, StreamId stream, DecodingFormat<DeserializationSchema<RowData>> format,
            DataType physical, boolean fromStart, boolean bounded) {
        this.controller = controller;
        this.stream = stream;
        this.format = format;
        this.physical = physical;
        this.fromStart = fromStart;
        this.bounded = bounded;
    }

    @Override
    public ChangelogMode getChangelogMode() {
        return format.getChangelogMode();
    }

    @Override
    public ScanRuntimeProvider getScanRuntimeProvider(ScanContext context) {
        DeserializationSchema<RowData> rows = format.createRuntimeDecoder(context, physical);
        NadiSource.Builder<RowData> b = NadiSource.<RowData>builder()
                .controller(controller).stream(stream.toString()).deserializer(rows);
        if (!fromStart) {
            b.fromLatest();
        }
        if (bounded) {
            b.boundedAtTail();
        }
        return SourceProvider.of(b.build());
    }

    @Override
    public DynamicTableSource copy() {
        return new NadiTableSource(controller, stream, format, physical, fromStart, bounded);
    }

    @Override
    public String asSummaryString() {
        return "Nadi(" + stream + ")";
    }
}
