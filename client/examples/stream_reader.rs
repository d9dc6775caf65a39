//! Reads `SCOPE/STREAM` from its head and prints every event with its segment and offset,
//! stopping once no event arrived for the idle timeout (the reader follows the tail of an
//! open stream, so it would otherwise wait for ever) or the sealed stream is read to its end.
//!
//! ```text
//! NADI_CONTROLLER=http://127.0.0.1:9090 cargo run -p nadi-client --example stream_reader -- demo/orders [IDLE_SECS]
//! ```
//! The controller URL defaults to `http://127.0.0.1:9090`, the idle timeout to 2 s.

use std::time::Duration;

use nadi_client::{NadiClient, StreamReader};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let controller = std::env::var("NADI_CONTROLLER").unwrap_or_else(|_| "http://127.0.0.1:9090".to_owned());
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some((scope, stream)), idle) = (args.first().and_then(|a| a.split_once('/')), args.get(1)) else {
        eprintln!("usage: stream_reader SCOPE/STREAM [IDLE_SECS]   (controller from NADI_CONTROLLER)");
        std::process::exit(2);
    };
    let idle = Duration::try_from_secs_f64(idle.map_or(Ok(2.0), |s| s.parse::<f64>())?)?;
    let client = NadiClient::new(&[controller])?;

    // `true`: from the head of the stream, following its successors through every scale.
    let mut reader = StreamReader::new(&client, scope, stream, true).await?;
    let mut count = 0u64;
    loop {
        match tokio::time::timeout(idle, reader.next()).await {
            Ok(Some(event)) => {
                let event = event?;
                count += 1;
                println!("{}@{}: {}", event.segment, event.offset, String::from_utf8_lossy(&event.payload));
            }
            Ok(None) => {
                eprintln!("{scope}/{stream} is sealed and read to its end");
                break;
            }
            Err(_) => {
                eprintln!("no event for {idle:?}; stopping");
                break;
            }
        }
    }
    eprintln!("read {count} events");
    Ok(())
}
