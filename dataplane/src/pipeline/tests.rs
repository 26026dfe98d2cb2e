use super::*;

#[test]
fn pipeline_moves_to_its_worker_thread() {
    fn send<T: Send>() {}
    send::<Pipeline<crate::frame::VecFrame>>();
    send::<Output<crate::frame::VecFrame>>();
    send::<ControlMsg>();
    send::<Event>();
}

#[test]
fn bad_specs_are_refused() {
    let cfg = Arc::new(PipelineConfig {
        ports: vec![PortSpec {
            mac: EthernetAddress([2, 0, 0, 0, 0, 1]),
            addresses: vec![(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 24)],
            mtu: 1500,
        }],
        ..PipelineConfig::default()
    });
    let w = |index, rx: Vec<u16>, key: Vec<Option<Vec<u8>>>| WorkerSpec {
        index,
        n_workers: 2,
        queue: index,
        rx_queues: rx,
        rss_key: key,
    };
    let new = |w| Pipeline::<crate::frame::VecFrame>::new(cfg.clone(), w).map(|_| ());
    assert!(matches!(
        new(w(2, vec![2], vec![None])),
        Err(ConfigError::WorkerIndex { .. })
    ));
    assert!(matches!(
        new(w(0, vec![], vec![None])),
        Err(ConfigError::PortCount { .. })
    ));
    assert!(matches!(
        new(w(0, vec![0], vec![None])),
        Err(ConfigError::NoQueues { .. })
    ));
    assert!(matches!(
        new(w(0, vec![2], vec![Some(vec![1, 2, 3])])),
        Err(ConfigError::Rss { .. })
    ));
    assert!(new(w(1, vec![2], vec![None])).is_ok());
    let mut bad = (*cfg).clone();
    bad.routes.push(Route {
        dst: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        prefix_len: 0,
        port: 3,
        gateway: None,
    });
    assert!(matches!(
        Pipeline::<crate::frame::VecFrame>::new(Arc::new(bad), w(0, vec![2], vec![None])),
        Err(ConfigError::Route { index: 0, .. })
    ));
    let mut bad = (*cfg).clone();
    bad.ports[0].mtu = 100;
    assert!(matches!(
        Pipeline::<crate::frame::VecFrame>::new(Arc::new(bad), w(0, vec![2], vec![None])),
        Err(ConfigError::Mtu { .. })
    ));
}
