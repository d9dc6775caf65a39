//! A segment store that is SIGKILLed and comes back at another address: writers and a
//! tail-following reader find it through the controller's container assignment and carry on.
//! Every acknowledged event is read exactly once, each key in order.

use std::time::Duration;

use nadi_client::{NadiClient, StreamReader, StreamSpec};
use nadi_tests::cluster::{Cluster, free_port};
use nadi_tests::load::{KeyedLoad, check_stream, keys};
use nadi_tests::{check_per_key_order, parse_keyed_event};

#[test]
fn writers_and_readers_follow_a_store_that_restarted_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Cluster::start(dir.path(), 1);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let _enter = rt.enter();
    let client = NadiClient::new(&[c.controller_urls()]).unwrap();
    let (load, live) = rt.block_on(async {
        client.create_scope("demo").await.unwrap();
        client.create_stream("demo", "m", StreamSpec::fixed(4)).await.unwrap();
        let load = KeyedLoad::start(&client, "demo", "m", keys(100), 500.0);
        let reader_client = client.clone();
        let live = tokio::spawn(async move {
            let mut r = StreamReader::new(&reader_client, "demo", "m", true).await.unwrap();
            let mut out = Vec::new();
            // Until nothing new for 5 s (the load has stopped by then).
            while let Ok(Some(ev)) = tokio::time::timeout(Duration::from_secs(5), r.next()).await {
                out.push(parse_keyed_event(&ev.unwrap().payload));
            }
            out
        });
        tokio::time::sleep(Duration::from_secs(2)).await;
        (load, live)
    });
    let before = c.store.as_ref().unwrap().ready_line.clone();
    c.store.take().unwrap().kill9();
    c.store_port = free_port();
    c.start_store();
    let after = c.store.as_ref().unwrap().ready_line.clone();
    assert_ne!(before, after, "the store came back at another address");
    let expected = rt.block_on(async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        load.stop().await
    });
    let total: u64 = expected.values().sum();
    assert!(total > 1500, "the writer kept writing through the restart ({total} events)");
    let live = rt.block_on(live).unwrap();
    check_per_key_order(&live, &expected, "tail reader through the restart");
    rt.block_on(check_stream(&client, "demo", "m", &expected));
}
