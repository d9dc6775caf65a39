//! A reader group member: joins `SCOPE/GROUP` (created from the head of `STREAM` if missing),
//! prints each event with its position, takes part in checkpoints, and leaves cleanly on Ctrl-C
//! so that the next reader continues exactly after the last event printed.
//!
//! ```text
//! cargo run -p nadi-client --example reader_group -- http://127.0.0.1:9090 demo orders billing
//! ```
//! Run it twice to see the two processes share the stream's segments.

use futures::StreamExt;
use nadi_client::{NadiClient, ReaderConfig, ReaderGroup, StartFrom};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [controller, scope, stream, group] = args.as_slice() else {
        eprintln!("usage: reader_group CONTROLLER_URL SCOPE STREAM GROUP");
        std::process::exit(2);
    };
    let client = NadiClient::new(std::slice::from_ref(controller))?;
    let group = ReaderGroup::create_or_open(&client, scope, group, &[stream.as_str()], StartFrom::Head).await?;
    let mut reader = group.reader(ReaderConfig::default()).await?;
    eprintln!("joined {}/{} as {}", group.scope(), group.name(), reader.id());
    {
        let mut events = std::pin::pin!(reader.events());
        loop {
            tokio::select! {
                ev = events.next() => match ev {
                    Some(ev) => {
                        let ev = ev?;
                        if let Some(c) = &ev.checkpoint {
                            println!("-- checkpoint {c} --");
                        }
                        let p = &ev.position;
                        println!("{}/{}@{}: {}", p.stream, p.segment, p.offset, String::from_utf8_lossy(&ev.payload));
                    }
                    None => break, // every stream of the group is sealed and read
                },
                _ = tokio::signal::ctrl_c() => break,
            }
        }
    }
    reader.close().await?;
    Ok(())
}
