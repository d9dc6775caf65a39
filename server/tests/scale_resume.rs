//! A scale interrupted after it was recorded (the controller died before creating the
//! successors) is rolled forward by `Controller::resume`: successors exist on the store,
//! predecessors are sealed there, and the new epoch is current.

use std::sync::Arc;

use nadi_controller::cluster::ClusterCommand;
use nadi_controller::meta::MetaStore;
use nadi_controller::service::Controller;
use nadi_controller::state::{Command, EpochReason, Scaling, StreamConfig};
use nadi_proto::SegmentId;
use nadi_proto::controller::v1 as cpb;
use nadi_proto::controller::v1::controller_service_server::ControllerService;
use nadi_proto::segment::v1 as spb;
use nadi_proto::segment::v1::segment_store_client::SegmentStoreClient;
use nadi_server::container::ContainerOptions;
use nadi_server::net::service::SegmentService;
use nadi_server::store::{SegmentStore, StoreConfig};
use tokio_stream::wrappers::TcpListenerStream;

#[tokio::test]
async fn resume_rolls_a_pending_scale_forward() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StoreConfig { dir: dir.path().join("tier1"), containers: 2, container: ContainerOptions::default() };
    let store = Arc::new(tokio::task::spawn_blocking(move || SegmentStore::open(&cfg)).await.unwrap().unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(SegmentService::new(store).into_server())
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );

    let meta = MetaStore::open_single_node(&dir.path().join("controller")).await.unwrap();
    let register = ClusterCommand::RegisterStore {
        store_id: "s1".into(),
        endpoint: url.clone(),
        containers: 2,
        now_ms: 0,
        replica_id: None,
    };
    meta.propose_cluster(register).await.unwrap();
    let controller = Controller::new(meta.clone());
    controller.create_scope(tonic::Request::new(cpb::CreateScopeRequest { scope: "s".into() })).await.unwrap();
    let config = Some(nadi_controller::service::config_to_pb(&StreamConfig {
        scaling: Scaling::Fixed { segments: 2 },
        retention: nadi_controller::state::Retention::None,
    }));
    let req = cpb::CreateStreamRequest { scope: "s".into(), stream: "t".into(), config };
    controller.create_stream(tonic::Request::new(req)).await.unwrap();

    // The controller "dies" right after recording the scale.
    let pred = SegmentId::new(0, 0);
    meta.propose(Command::StartScale {
        scope: "s".into(),
        stream: "t".into(),
        sealed: vec![pred],
        new_ranges: vec![(0.0, 0.25), (0.25, 0.5)],
        reason: EpochReason::Manual,
        promoted: vec![],
        now_ms: 1,
    })
    .await
    .unwrap();
    let succ = cpb::GetSuccessorsRequest { scope: "s".into(), stream: "t".into(), segment_id: pred.packed() };
    let pending = controller.get_successors(tonic::Request::new(succ.clone())).await.unwrap().into_inner();
    assert_eq!(pending.successors.len(), 2, "successors are visible as soon as the scale started");
    drop(controller);
    meta.node().raft.shutdown().await.unwrap();
    drop(meta);

    // A new controller over the same metadata finishes it.
    let controller = Controller::new(MetaStore::open_single_node(&dir.path().join("controller")).await.unwrap());
    controller.resume().await.unwrap();
    let req = cpb::GetActiveSegmentsRequest { scope: "s".into(), stream: "t".into() };
    let active = controller.get_active_segments(tonic::Request::new(req)).await.unwrap().into_inner();
    assert_eq!(active.epoch, 1);
    let ranges: Vec<(f64, f64)> =
        active.segments.iter().map(|l| l.segment.as_ref().unwrap()).map(|s| (s.key_low, s.key_high)).collect();
    assert_eq!(ranges, vec![(0.0, 0.25), (0.25, 0.5), (0.5, 1.0)]);
    let mut seg = SegmentStoreClient::connect(url).await.unwrap();
    for l in &active.segments {
        let name = l.segment.as_ref().unwrap().qualified_name.clone();
        let info = seg.get_segment_info(spb::GetSegmentInfoRequest { segment: name }).await.unwrap().into_inner();
        assert!(!info.sealed, "successors exist and are open");
    }
    let pred_name = nadi_proto::names::segment_name("s", "t", pred);
    let info = seg.get_segment_info(spb::GetSegmentInfoRequest { segment: pred_name }).await.unwrap().into_inner();
    assert!(info.sealed, "the predecessor is sealed on the store");
    controller.resume().await.unwrap(); // nothing left to do: idempotent
    let after = controller.get_successors(tonic::Request::new(succ)).await.unwrap().into_inner();
    assert_eq!(after, pending);
}
