//! Tables of the other served kinds, and HumanDuration.

use podvisor_apiserver::ResourceKind;
use podvisor_apiserver::registry::{
    CONFIGMAPS, DEPLOYMENTS, ENDPOINTS, ENDPOINTSLICES, EVENTS, EVENTS_V1, LEASES, NAMESPACES,
    NODES, REPLICASETS, SECRETS, SERVICES, STATEFULSETS,
};
use podvisor_apiserver::table::{
    column_definitions, human_duration_nanos, human_duration_secs, table_for,
};
use serde_json::{Value, json};

fn now() -> jiff::Timestamp {
    "2026-11-25T10:00:00Z".parse().unwrap()
}

fn meta(name: &str) -> Value {
    json!({"name":name,"namespace":"default","creationTimestamp":"2026-11-25T07:00:00Z"})
}

fn cells(kind: &ResourceKind, o: Value) -> Vec<Value> {
    table_for(kind, &[o], true, now())["rows"][0]["cells"]
        .as_array()
        .unwrap()
        .clone()
}

fn column_names(kind: &ResourceKind) -> Vec<(String, u64)> {
    column_definitions(kind)
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["priority"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn human_duration_like_upstream() {
    let cases: &[(i64, &str)] = &[
        (-5, "<invalid>"),
        (-1, "0s"),
        (0, "0s"),
        (45, "45s"),
        (119, "119s"),
        (120, "2m"),
        (134, "2m14s"),
        (599, "9m59s"),
        (600, "10m"),
        (10_799, "179m"),
        (3 * 3600, "3h"),
        (3 * 3600 + 4 * 60 + 59, "3h4m"),
        (8 * 3600, "8h"),
        (47 * 3600 + 59 * 60, "47h"),
        (48 * 3600, "2d"),
        (2 * 86400 + 4 * 3600, "2d4h"),
        (8 * 86400, "8d"),
        (729 * 86400, "729d"),
        (730 * 86400, "2y"),
        (760 * 86400, "2y30d"),
        (8 * 365 * 86400, "8y"),
        (20 * 365 * 86400, "20y"),
    ];
    for &(secs, want) in cases {
        assert_eq!(human_duration_secs(secs), want, "{secs}s");
    }
    assert_eq!(human_duration_nanos(1_900_000_000), "1s");
    assert_eq!(human_duration_nanos(-1_500_000_000), "0s");
}

#[test]
fn nodes() {
    assert_eq!(
        column_names(&NODES),
        [
            ("Name", 0),
            ("Status", 0),
            ("Roles", 0),
            ("Age", 0),
            ("Version", 0),
            ("Internal-IP", 1),
            ("External-IP", 1),
            ("OS-Image", 1),
            ("Kernel-Version", 1),
            ("Container-Runtime", 1)
        ]
        .map(|(n, p)| (n.to_string(), p))
    );
    let node = json!({"metadata":{"name":"n1","creationTimestamp":"2026-11-20T10:00:00Z",
            "labels":{"node-role.kubernetes.io/worker":"","node-role.kubernetes.io/control-plane":"","kubernetes.io/role":"x"}},
        "spec":{"unschedulable":true},
        "status":{"conditions":[{"type":"MemoryPressure","status":"False"},{"type":"Ready","status":"True"}],
                  "addresses":[{"type":"Hostname","address":"n1"},{"type":"InternalIP","address":"10.0.0.1"}],
                  "nodeInfo":{"kubeletVersion":"v1.32.4","osImage":"Linux","kernelVersion":"6.1","containerRuntimeVersion":"podvisor://0.1"}}});
    assert_eq!(
        cells(&NODES, node.clone()),
        vec![
            json!("n1"),
            json!("Ready,SchedulingDisabled"),
            json!("control-plane,worker,x"),
            json!("5d"),
            json!("v1.32.4"),
            json!("10.0.0.1"),
            json!("<none>"),
            json!("Linux"),
            json!("6.1"),
            json!("podvisor://0.1")
        ]
    );
    let mut not_ready = node.clone();
    not_ready["status"]["conditions"][1]["status"] = json!("Unknown");
    not_ready["spec"] = json!({});
    assert_eq!(cells(&NODES, not_ready)[1], "NotReady");
    let bare = json!({"metadata":{"name":"n2"}});
    let c = cells(&NODES, bare);
    assert_eq!(
        (c[1].as_str(), c[2].as_str(), c[7].as_str()),
        (Some("Unknown"), Some("<none>"), Some("<unknown>"))
    );
}

#[test]
fn core_events() {
    assert_eq!(
        column_names(&EVENTS)
            .iter()
            .filter(|(_, p)| *p == 0)
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>(),
        ["Last Seen", "Type", "Reason", "Object", "Message"]
    );
    let ev = json!({"metadata":meta("x.123"),"type":"Normal","reason":"Scheduled","message":"  assigned  ",
        "involvedObject":{"kind":"Pod","name":"x","fieldPath":"spec.containers{c}"},
        "source":{"component":"default-scheduler","host":"node-1"},
        "firstTimestamp":"2026-11-25T09:58:00Z","lastTimestamp":"2026-11-25T09:59:30Z","count":2});
    assert_eq!(
        cells(&EVENTS, ev),
        vec![
            json!("30s"),
            json!("Normal"),
            json!("Scheduled"),
            json!("pod/x"),
            json!("spec.containers{c}"),
            json!("default-scheduler, node-1"),
            json!("assigned"),
            json!("2m"),
            json!(2),
            json!("x.123")
        ]
    );
    let ev = json!({"metadata":meta("y"),"involvedObject":{"kind":"Node"},"eventTime":"2026-11-25T09:59:00.000000Z",
        "reportingController":"kubelet","reportingInstance":"n1"});
    let c = cells(&EVENTS, ev);
    assert_eq!(
        (c[0].as_str(), c[3].as_str(), c[5].as_str(), c[8].as_i64()),
        (Some("60s"), Some("node"), Some("kubelet, n1"), Some(1))
    );
    let ev = json!({"metadata":meta("z"),"involvedObject":{"kind":"Pod","name":"p"},"firstTimestamp":"2026-11-25T09:00:00Z",
        "series":{"count":7,"lastObservedTime":"2026-11-25T09:59:50.000000Z"}});
    let c = cells(&EVENTS, ev);
    assert_eq!((c[0].as_str(), c[8].as_i64()), (Some("10s"), Some(7)));
}

#[test]
fn events_k8s_io_v1_events_map_to_core_fields() {
    let ev = json!({"metadata":meta("e"),"type":"Warning","reason":"BackOff","note":"restarting",
        "regarding":{"kind":"Pod","name":"p"},"eventTime":"2026-11-25T09:59:00.000000Z","reportingController":"kubelet",
        "deprecatedCount":3,"deprecatedLastTimestamp":"2026-11-25T09:59:55Z"});
    let c = cells(&EVENTS_V1, ev);
    assert_eq!(c[0], "5s");
    assert_eq!(c[3], "pod/p");
    assert_eq!(c[5], "kubelet");
    assert_eq!(c[6], "restarting");
    assert_eq!(c[7], "60s");
    assert_eq!(c[8], 3);
}

#[test]
fn services() {
    let svc =
        |spec: Value, status: Value| json!({"metadata":meta("s"),"spec":spec,"status":status});
    assert_eq!(
        cells(
            &SERVICES,
            svc(
                json!({"type":"ClusterIP","clusterIPs":["10.96.0.10"],"ports":[{"port":53,"protocol":"UDP"},{"port":443,"protocol":"TCP"}],
                                    "selector":{"k8s-app":"dns","a":"b"}}),
                json!({})
            )
        ),
        vec![
            json!("s"),
            json!("ClusterIP"),
            json!("10.96.0.10"),
            json!("<none>"),
            json!("53/UDP,443/TCP"),
            json!("3h"),
            json!("a=b,k8s-app=dns")
        ]
    );
    let c = cells(
        &SERVICES,
        svc(
            json!({"type":"NodePort","ports":[{"port":80,"nodePort":30080,"protocol":"TCP"}],"externalIPs":["1.2.3.4"]}),
            json!({}),
        ),
    );
    assert_eq!(
        (c[2].as_str(), c[3].as_str(), c[4].as_str(), c[6].as_str()),
        (
            Some("<none>"),
            Some("1.2.3.4"),
            Some("80:30080/TCP"),
            Some("<none>")
        )
    );
    let c = cells(&SERVICES, svc(json!({"type":"LoadBalancer"}), json!({})));
    assert_eq!(
        (c[3].as_str(), c[4].as_str()),
        (Some("<pending>"), Some("<none>"))
    );
    let c = cells(
        &SERVICES,
        svc(
            json!({"type":"LoadBalancer"}),
            json!({"loadBalancer":{"ingress":[{"ip":"5.6.7.8"},{"hostname":"lb.example"}]}}),
        ),
    );
    assert_eq!(c[3], "5.6.7.8,lb.example");
    let c = cells(
        &SERVICES,
        svc(
            json!({"type":"ExternalName","externalName":"example.com"}),
            json!({}),
        ),
    );
    assert_eq!(c[3], "example.com");
}

#[test]
fn endpoints_and_endpoint_slices() {
    let ep = json!({"metadata":meta("e"),"subsets":[{"addresses":[{"ip":"10.0.0.1"},{"ip":"10.0.0.2"},{"ip":"fd00::3"}],
        "ports":[{"port":80},{"port":443}]}]});
    assert_eq!(
        cells(&ENDPOINTS, ep)[1],
        "10.0.0.1:80,10.0.0.2:80,[fd00::3]:80 + 3 more..."
    );
    assert_eq!(
        cells(&ENDPOINTS, json!({"metadata":meta("e")}))[1],
        "<none>"
    );
    let headless = json!({"metadata":meta("e"),"subsets":[{"addresses":[{"ip":"10.0.0.1"}]}]});
    assert_eq!(cells(&ENDPOINTS, headless)[1], "10.0.0.1");

    assert_eq!(
        column_names(&ENDPOINTSLICES)
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>(),
        ["Name", "AddressType", "Ports", "Endpoints", "Age"]
    );
    let slice = json!({"metadata":meta("s-abc"),"addressType":"IPv4","ports":[{"port":80},{"name":"x"},{}],
        "endpoints":[{"addresses":["10.0.0.1"]},{"addresses":["10.0.0.2","10.0.0.3","10.0.0.4"]}]});
    assert_eq!(
        cells(&ENDPOINTSLICES, slice),
        vec![
            json!("s-abc"),
            json!("IPv4"),
            json!("80,x,*"),
            json!("10.0.0.1,10.0.0.2,10.0.0.3 + 1 more..."),
            json!("3h")
        ]
    );
    assert_eq!(
        cells(&ENDPOINTSLICES, json!({"metadata":meta("s")}))[2],
        "<unset>"
    );
}

#[test]
fn replicasets_deployments_statefulsets() {
    let template = json!({"spec":{"containers":[{"name":"a","image":"nginx"},{"name":"b","image":"busybox"}]}});
    let rs = json!({"metadata":meta("rs"),"spec":{"replicas":3,"template":template,
        "selector":{"matchLabels":{"app":"x"},"matchExpressions":[{"key":"tier","operator":"In","values":["web","api"]},{"key":"z","operator":"DoesNotExist"}]}},
        "status":{"replicas":3,"readyReplicas":2}});
    assert_eq!(
        cells(&REPLICASETS, rs),
        vec![
            json!("rs"),
            json!(3),
            json!(3),
            json!(2),
            json!("3h"),
            json!("a,b"),
            json!("nginx,busybox"),
            json!("app=x,tier in (api,web),!z")
        ]
    );
    assert_eq!(column_definitions(&REPLICASETS)[1]["type"], "integer");
    let rs = json!({"metadata":meta("rs"),"spec":{}});
    let c = cells(&REPLICASETS, rs);
    assert_eq!((c[1].as_i64(), c[7].as_str()), (Some(0), Some("<none>")));

    let d = json!({"metadata":meta("d"),"spec":{"replicas":3,"template":template,"selector":{"matchLabels":{"app":"d"}}},
        "status":{"readyReplicas":1,"updatedReplicas":2,"availableReplicas":1}});
    assert_eq!(
        cells(&DEPLOYMENTS, d),
        vec![
            json!("d"),
            json!("1/3"),
            json!(2),
            json!(1),
            json!("3h"),
            json!("a,b"),
            json!("nginx,busybox"),
            json!("app=d")
        ]
    );
    let bad = json!({"metadata":meta("d"),"spec":{"selector":{"matchExpressions":[{"key":"a","operator":"Near"}]}}});
    assert_eq!(cells(&DEPLOYMENTS, bad)[7], "<invalid>");

    let sts = json!({"metadata":meta("web"),"spec":{"replicas":2,"template":template},"status":{"readyReplicas":2}});
    assert_eq!(
        cells(&STATEFULSETS, sts),
        vec![
            json!("web"),
            json!("2/2"),
            json!("3h"),
            json!("a,b"),
            json!("nginx,busybox")
        ]
    );
}

#[test]
fn small_kinds() {
    assert_eq!(
        cells(
            &NAMESPACES,
            json!({"metadata":meta("kube-system"),"status":{"phase":"Active"}})
        ),
        vec![json!("kube-system"), json!("Active"), json!("3h")]
    );
    assert_eq!(
        cells(
            &LEASES,
            json!({"metadata":meta("node-1"),"spec":{"holderIdentity":"node-1"}})
        ),
        vec![json!("node-1"), json!("node-1"), json!("3h")]
    );
    assert_eq!(
        cells(
            &CONFIGMAPS,
            json!({"metadata":meta("c"),"data":{"a":"1","b":"2"},"binaryData":{"c":"AA=="}})
        ),
        vec![json!("c"), json!(3), json!("3h")]
    );
    assert_eq!(
        cells(
            &SECRETS,
            json!({"metadata":meta("s"),"type":"Opaque","data":{"a":"MQ=="}})
        ),
        vec![json!("s"), json!("Opaque"), json!(1), json!("3h")]
    );
}

static WIDGETS: ResourceKind =
    ResourceKind::new("example.com", "v1", "Widget", "widgets", "widget", true);

#[test]
fn kinds_without_a_printer_get_name_and_age() {
    assert_eq!(
        column_names(&WIDGETS),
        [("Name".to_string(), 0), ("Age".to_string(), 0)]
    );
    assert_eq!(
        cells(&WIDGETS, json!({"metadata":meta("w")})),
        vec![json!("w"), json!("3h")]
    );
}
