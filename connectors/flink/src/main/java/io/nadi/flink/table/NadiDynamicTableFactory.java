package io.nadi.flink.table;

import io.nadi.flink.client.ClientSecurity;
import io.nadi.flink.client.StreamId;
import java.time.Duration;
import java.util.List;
import java.util.Locale;
import java.util.Set;
import org.apache.flink.api.common.serialization.DeserializationSchema;
import org.apache.flink.api.common.serialization.SerializationSchema;
import org.apache.flink.configuration.ConfigOption;
import org.apache.flink.configuration.ConfigOptions;
import org.apache.flink.configuration.ReadableConfig;
import org.apache.flink.connector.base.DeliveryGuarantee;
import org.apache.flink.table.api.ValidationException;
import org.apache.flink.table.connector.format.DecodingFormat;
import org.apache.flink.table.connector.format.EncodingFormat;
import org.apache.flink.table.connector.sink.DynamicTableSink;
import org.apache.flink.table.connector.source.DynamicTableSource;
import org.apache.flink.table.data.RowData;
import org.apache.flink.table.factories.DeserializationFormatFactory;
import org.apache.flink.table.factories.DynamicTableSinkFactory;
import org.apache.flink.table.factories.DynamicTableSourceFactory;
import org.apache.flink.table.factories.FactoryUtil;
import org.apache.flink.table.factories.SerializationFormatFactory;
import org.apache.flink.table.types.DataType;

/**
 * {@code 'connector' = 'nadi'}: a Nadi stream as a Flink SQL table, source and sink, with any
 * Flink format ({@code json}, {@code csv}, ...).
 *
 * <pre>
 * CREATE TABLE orders (customer STRING, amount INT, ts TIMESTAMP(3),
 *                      WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
 * WITH ('connector' = 'nadi', 'controller' = 'http://127.0.0.1:9090', 'stream' = 'demo/orders',
 *       'format' = 'json', 'sink.routing-key.field' = 'customer');
 * </pre>
 *
 * With {@code --auth required} servers, {@code 'token'} is the bearer token (its principal
 * needs read on a scanned stream, write on a written one). Flink hides the values of options
 * whose key contains "token" wherever it prints table options.
 */
public final class NadiDynamicTableFactory implements DynamicTableSourceFactory, DynamicTableSinkFactory {
    public static final String IDENTIFIER = "nadi";

    public static final ConfigOption<String> CONTROLLER = ConfigOptions.key("controller").stringType().noDefaultValue()
            .withDescription("The controller's gRPC URL, e.g. http://127.0.0.1:9090.");
    public static final ConfigOption<String> TOKEN = ConfigOptions.key("token").stringType().noDefaultValue()
            .withDescription("Bearer token presented on every call (servers with --auth required); none by default.");
    public static final ConfigOption<String> STREAM = ConfigOptions.key("stream").stringType().noDefaultValue()
            .withDescription("The stream, 'scope/stream'.");
    public static final ConfigOption<String> STARTUP_MODE = ConfigOptions.key("scan.startup.mode").stringType()
            .defaultValue("earliest").withDescription("'earliest' (the head of the stream), 'latest' (its tail) or"
                    + " 'timestamp' (the events appended at or after 'scan.startup.timestamp-millis').");
    public static final ConfigOption<String> STARTUP_TIMESTAMP = ConfigOptions.key("scan.startup.timestamp-millis")
            .stringType().noDefaultValue().withDescription("With 'scan.startup.mode' = 'timestamp': the start time,"
                    + " milliseconds since the Unix epoch (compared with the store's append times, 1 s resolution).");
    public static final ConfigOption<String> WATERMARKS = ConfigOptions.key("scan.watermarks").stringType()
            .defaultValue("table").withDescription("'table': the WATERMARK clause's expression, per segment;"
                    + " 'writers': the stream's writers' watermarks (the clause only names the event-time column).");
    public static final ConfigOption<Boolean> BOUNDED = ConfigOptions.key("scan.bounded").booleanType()
            .defaultValue(false).withDescription("Read up to the stream's tail as of the job's start, then end.");
    public static final ConfigOption<String> DELIVERY = ConfigOptions.key("sink.delivery-guarantee").stringType()
            .defaultValue("exactly-once").withDescription("'exactly-once' (transactions) or 'at-least-once'.");
    public static final ConfigOption<Duration> LEASE = ConfigOptions.key("sink.transaction.lease").durationType()
            .defaultValue(Duration.ofMinutes(10))
            .withDescription("Lease of each sink transaction; above checkpoint interval plus recovery time.");
    public static final ConfigOption<String> KEY_FIELD = ConfigOptions.key("sink.routing-key.field").stringType()
            .noDefaultValue().withDescription("Column whose value (as a string) is the routing key; none: no key.");

    @Override
    public String factoryIdentifier() {
        return IDENTIFIER;
    }

    @Override
    public Set<ConfigOption<?>> requiredOptions() {
        return Set.of(CONTROLLER, STREAM, FactoryUtil.FORMAT);
    }

    @Override
    public Set<ConfigOption<?>> optionalOptions() {
        return Set.of(TOKEN, STARTUP_MODE, STARTUP_TIMESTAMP, WATERMARKS, BOUNDED, DELIVERY, LEASE, KEY_FIELD);
    }

    @Override
    public DynamicTableSource createDynamicTableSource(Context context) {
        FactoryUtil.TableFactoryHelper helper = FactoryUtil.createTableFactoryHelper(this, context);
        DecodingFormat<DeserializationSchema<RowData>> format =
                helper.discoverDecodingFormat(DeserializationFormatFactory.class, FactoryUtil.FORMAT);
        helper.validate();
        ReadableConfig o = helper.getOptions();
        String mode = o.get(STARTUP_MODE).toLowerCase(Locale.ROOT);
        Long startMs = startTimestamp(mode, o);
        String watermarks = o.get(WATERMARKS).toLowerCase(Locale.ROOT);
        if (!watermarks.equals("table") && !watermarks.equals("writers")) {
            throw new ValidationException("'scan.watermarks' must be 'table' or 'writers', got '" + o.get(WATERMARKS)
                    + "'");
        }
        DataType physical = context.getPhysicalRowDataType();
        return new NadiTableSource(o.get(CONTROLLER), security(o), stream(o), format, physical, mode, startMs,
                o.get(BOUNDED), watermarks.equals("writers"));
    }

    @Override
    public DynamicTableSink createDynamicTableSink(Context context) {
        FactoryUtil.TableFactoryHelper helper = FactoryUtil.createTableFactoryHelper(this, context);
        EncodingFormat<SerializationSchema<RowData>> format =
                helper.discoverEncodingFormat(SerializationFormatFactory.class, FactoryUtil.FORMAT);
        helper.validate();
        ReadableConfig o = helper.getOptions();
        DeliveryGuarantee guarantee;
        switch (o.get(DELIVERY).toLowerCase(Locale.ROOT)) {
            case "exactly-once":
                guarantee = DeliveryGuarantee.EXACTLY_ONCE;
                break;
            case "at-least-once":
                guarantee = DeliveryGuarantee.AT_LEAST_ONCE;
                break;
            default:
                throw new ValidationException("'sink.delivery-guarantee' must be 'exactly-once' or 'at-least-once', got '"
                        + o.get(DELIVERY) + "'");
        }
        DataType physical = context.getPhysicalRowDataType();
        int keyIndex = -1;
        if (o.getOptional(KEY_FIELD).isPresent()) {
            List<String> names = DataType.getFieldNames(physical);
            keyIndex = names.indexOf(o.get(KEY_FIELD));
            if (keyIndex < 0) {
                throw new ValidationException("'sink.routing-key.field' names no column: '" + o.get(KEY_FIELD)
                        + "' (columns: " + names + ")");
            }
        }
        return new NadiTableSink(o.get(CONTROLLER), security(o), stream(o), format, physical, guarantee, o.get(LEASE),
                keyIndex);
    }

    /**
     * Checks 'scan.startup.mode' and 'scan.startup.timestamp-millis' together (as Flink's Kafka
     * connector names them): the time is required with 'timestamp' and refused with any other
     * mode. Returns it, or null.
     */
    private static Long startTimestamp(String mode, ReadableConfig o) {
        java.util.Optional<String> ts = o.getOptional(STARTUP_TIMESTAMP);
        switch (mode) {
            case "earliest":
            case "latest":
                if (ts.isPresent()) {
                    throw new ValidationException("'scan.startup.timestamp-millis' is only allowed with 'scan.startup.mode'"
                            + " = 'timestamp', not with '" + mode + "'");
                }
                return null;
            case "timestamp":
                if (ts.isEmpty()) {
                    throw new ValidationException("'scan.startup.mode' = 'timestamp' requires"
                            + " 'scan.startup.timestamp-millis' (milliseconds since the Unix epoch)");
                }
                long ms;
                try {
                    ms = Long.parseLong(ts.get().trim());
                } catch (NumberFormatException e) {
                    throw new ValidationException("'scan.startup.timestamp-millis' must be milliseconds since the Unix"
                            + " epoch (a whole number), got '" + ts.get() + "'", e);
                }
                if (ms < 0) {
                    throw new ValidationException("'scan.startup.timestamp-millis' must be >= 0, got '" + ts.get() + "'");
                }
                return ms;
            default:
                throw new ValidationException("'scan.startup.mode' must be 'earliest', 'latest' or 'timestamp', got '"
                        + o.get(STARTUP_MODE) + "'");
        }
    }

    private static ClientSecurity security(ReadableConfig o) {
        try {
            return ClientSecurity.none().withToken(o.getOptional(TOKEN).orElse(null));
        } catch (IllegalArgumentException e) {
            throw new ValidationException("option 'token': " + e.getMessage(), e); // the message holds no token
        }
    }

    private static StreamId stream(ReadableConfig o) {
        try {
            return StreamId.parse(o.get(STREAM));
        } catch (IllegalArgumentException e) {
            throw new ValidationException("option 'stream': " + e.getMessage(), e);
        }
    }
}
