//! Writes three events in one transaction and commits them.
//!
//! Start a server (`nadi standalone`), then:
//! `cargo run -p nadi-client --example transaction [CONTROLLER_URL]`
//! and read them back with `nadi read demo/txn-example --from-start --idle-timeout 1`.

use std::time::Duration;

use nadi_client::{ErrorKind, NadiClient, StreamSpec, TransactionalWriter};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args().nth(1).unwrap_or_else(|| "http://127.0.0.1:9090".to_owned());
    let client = NadiClient::new(&[url])?;
    // Create the scope and stream unless they exist.
    if let Err(e) = client.create_scope("demo").await
        && e.kind != ErrorKind::AlreadyExists
    {
        return Err(e.into());
    }
    if let Err(e) = client.create_stream("demo", "txn-example", StreamSpec::fixed(2)).await
        && e.kind != ErrorKind::AlreadyExists
    {
        return Err(e.into());
    }

    let mut txn = TransactionalWriter::begin(&client, "demo", "txn-example", Duration::from_secs(30)).await?;
    println!("began transaction {} in epoch {}", txn.txn_id(), txn.epoch());
    for i in 0..3 {
        txn.write(Some(b"customer-7"), format!("order {i}").into()).await?;
    }
    // Durable but invisible until the commit.
    txn.flush().await?;
    let status = txn.commit().await?;
    println!("transaction {} is {:?}", status.txn_id, status.state);
    Ok(())
}
