//! Keyed writes with a stable writer id: creates `SCOPE/STREAM` if missing, writes a few
//! orders for three customers (each customer's orders stay in order), flushes and closes.
//!
//! ```text
//! NADI_CONTROLLER=http://127.0.0.1:9090 cargo run -p nadi-client --example writer -- demo/orders
//! ```
//! The controller URL defaults to `http://127.0.0.1:9090`. Read the events back with the
//! `stream_reader` example. Running it again continues the writer's numbering (same writer id),
//! so the new events are stored after the old ones.

use bytes::Bytes;
use nadi_client::{ErrorKind, EventWriter, NadiClient, StreamSpec, WriterConfig};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let controller = std::env::var("NADI_CONTROLLER").unwrap_or_else(|_| "http://127.0.0.1:9090".to_owned());
    let target = std::env::args().nth(1).unwrap_or_default();
    let Some((scope, stream)) = target.split_once('/') else {
        eprintln!("usage: writer SCOPE/STREAM   (controller from NADI_CONTROLLER)");
        std::process::exit(2);
    };
    let client = NadiClient::new(&[controller])?;

    // Create the scope and stream unless they exist.
    if let Err(e) = client.create_scope(scope).await
        && e.kind != ErrorKind::AlreadyExists
    {
        return Err(e.into());
    }
    if let Err(e) = client.create_stream(scope, stream, StreamSpec::fixed(2)).await
        && e.kind != ErrorKind::AlreadyExists
    {
        return Err(e.into());
    }

    // A stable writer id: a restarted run continues this writer's event numbering.
    let config = WriterConfig { writer_id: Some("example-writer".into()), ..WriterConfig::default() };
    let writer = EventWriter::new(&client, scope, stream, config).await?;
    for i in 0..9 {
        let customer = format!("customer-{}", i % 3);
        let order = format!("{customer} order {}", i / 3);
        // Same key, same segment: each customer's orders are stored in the order written.
        writer.write(Some(customer.as_bytes()), Bytes::from(order)).await?;
    }
    // `write` only queues; `flush` returns once everything written before it is durable.
    writer.flush().await?;
    println!("wrote 9 events to {scope}/{stream} as writer {}", writer.writer_id());
    writer.close().await?;
    Ok(())
}
