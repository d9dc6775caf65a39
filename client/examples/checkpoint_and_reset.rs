//! Checkpoints and reset: takes checkpoint NAME of `SCOPE/GROUP` (waiting until every reader
//! has recorded its position), prints the positions, and with `--reset` moves the group back
//! to it, so that its readers (after joining again) resume exactly there.
//!
//! ```text
//! cargo run -p nadi-client --example checkpoint_and_reset -- http://127.0.0.1:9090 demo billing cp-1 [--reset]
//! ```

use std::time::Duration;

use nadi_client::{NadiClient, ReaderGroup};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (controller, scope, group, name) = match args.as_slice() {
        [c, s, g, n, ..] => (c, s, g, n),
        _ => {
            eprintln!("usage: checkpoint_and_reset CONTROLLER_URL SCOPE GROUP CHECKPOINT [--reset]");
            std::process::exit(2);
        }
    };
    let client = NadiClient::new(std::slice::from_ref(controller))?;
    let group = ReaderGroup::open(&client, scope, group).await?;
    group.initiate_checkpoint(name).await?;
    let cut = group.wait_for_checkpoint(name, Duration::from_secs(30)).await?;
    for ((stream, segment), offset) in &cut.positions {
        println!("{stream}/{segment}: {offset}");
    }
    if args.iter().any(|a| a == "--reset") {
        let info = group.reset_to_checkpoint(name).await?;
        println!("reset to {name}; generation {}", info.generation);
    }
    Ok(())
}
