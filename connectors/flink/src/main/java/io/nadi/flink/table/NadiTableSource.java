package io.nadi.flink.table;

import io.nadi.flink.client.ClientSecurity;
import io.nadi.flink.client.StreamId;
import io.nadi.flink.source.NadiSource;
import org.apache.flink.api.common.eventtime.WatermarkStrategy;
import org.apache.flink.api.common.serialization.DeserializationSchema;
import org.apache.flink.streaming.api.datastream.DataStreamSource;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.table.connector.ProviderContext;
import org.apache.flink.table.connector.ChangelogMode;
import org.apache.flink.table.connector.format.DecodingFormat;
import org.apache.flink.table.connector.source.DynamicTableSource;
import org.apache.flink.table.connector.source.ScanTableSource;
import org.apache.flink.table.connector.source.DataStreamScanProvider;
import org.apache.flink.table.connector.source.abilities.SupportsWatermarkPushDown;
import org.apache.flink.table.data.RowData;
import org.apache.flink.table.types.DataType;

/**
 * The scan side of a {@code 'connector' = 'nadi'} table: a {@link NadiSource} of rows. The
 * table's {@code WATERMARK} clause is pushed into the source, so watermarks are generated per
 * segment (split), as in the DataStream API. With {@code 'scan.watermarks' = 'writers'} the
 * source emits the stream's writers' watermarks instead and the pushed strategy's generator is
 * not used (the clause still makes its column the table's event-time attribute, which the
 * window operators read from the rows).
 */
final class NadiTableSource implements ScanTableSource, SupportsWatermarkPushDown {
    private final String controller;
    private final ClientSecurity security;
    private final StreamId stream;
    private final DecodingFormat<DeserializationSchema<RowData>> format;
    private final DataType physical;
    /** 'earliest', 'latest' or 'timestamp' (checked by the factory). */
    private final String startMode;
    /** With 'timestamp': ms since the Unix epoch; else null. */
    private final Long startMs;
    private final boolean bounded;
    private final boolean writerWatermarks;
    private WatermarkStrategy<RowData> watermarks = WatermarkStrategy.noWatermarks();

    NadiTableSource(String controller, ClientSecurity security, StreamId stream,
            DecodingFormat<DeserializationSchema<RowData>> format, DataType physical, String startMode, Long startMs,
            boolean bounded, boolean writerWatermarks) {
        this.controller = controller;
        this.security = security;
        this.stream = stream;
        this.format = format;
        this.physical = physical;
        this.startMode = startMode;
        this.startMs = startMs;
        this.bounded = bounded;
        this.writerWatermarks = writerWatermarks;
    }

    @Override
    public ChangelogMode getChangelogMode() {
        return format.getChangelogMode();
    }

    @Override
    public ScanRuntimeProvider getScanRuntimeProvider(ScanContext context) {
        DeserializationSchema<RowData> rows = format.createRuntimeDecoder(context, physical);
        NadiSource.Builder<RowData> b = NadiSource.<RowData>builder()
                .controller(controller).security(security).stream(stream.toString()).deserializer(rows);
        if (startMode.equals("latest")) {
            b.fromLatest();
        } else if (startMode.equals("timestamp")) {
            b.startFromTimestamp(startMs);
        }
        if (bounded) {
            b.boundedAtTail();
        }
        if (writerWatermarks) {
            b.watermarksFromWriters();
        }
        NadiSource<RowData> source = b.build();
        WatermarkStrategy<RowData> strategy = writerWatermarks ? WatermarkStrategy.noWatermarks() : watermarks;
        return new DataStreamScanProvider() {
            @Override
            public org.apache.flink.streaming.api.datastream.DataStream<RowData> produceDataStream(
                    ProviderContext provider, StreamExecutionEnvironment env) {
                DataStreamSource<RowData> s = env.fromSource(source, strategy, "Nadi(" + stream + ")");
                provider.generateUid("nadi-source").ifPresent(s::uid);
                return s;
            }

            @Override
            public boolean isBounded() {
                return bounded;
            }
        };
    }

    @Override
    public void applyWatermark(WatermarkStrategy<RowData> strategy) {
        this.watermarks = strategy;
    }

    @Override
    public DynamicTableSource copy() {
        NadiTableSource copy = new NadiTableSource(controller, security, stream, format, physical, startMode, startMs,
                bounded, writerWatermarks);
        copy.watermarks = watermarks;
        return copy;
    }

    @Override
    public String asSummaryString() {
        return "Nadi(" + stream + ")";
    }
}
