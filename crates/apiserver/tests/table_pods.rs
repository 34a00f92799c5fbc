//! Pod Tables: one test per `printPod` STATUS rule, plus the column set and row shape.

use podvisor_apiserver::registry::PODS;
use podvisor_apiserver::table::{column_definitions, table_for};
use serde_json::{Value, json};

fn now() -> jiff::Timestamp {
    "2026-11-25T10:00:00Z".parse().unwrap()
}

const CREATED: &str = "2026-11-25T09:50:00Z"; // 10m before now

fn pod(name: &str, spec: Value, status: Value) -> Value {
    json!({"apiVersion":"v1","kind":"Pod",
           "metadata":{"name":name,"namespace":"default","uid":"u-1","resourceVersion":"7",
                       "creationTimestamp":CREATED,"labels":{"app":name},
                       "managedFields":[{"manager":"x"}]},
           "spec":spec,"status":status})
}

fn one() -> Value {
    json!({"containers":[{"name":"c","image":"busybox"}],"nodeName":"node-1"})
}

fn cells(p: &Value) -> Vec<Value> {
    let t = table_for(&PODS, std::slice::from_ref(p), true, now());
    t["rows"][0]["cells"].as_array().unwrap().clone()
}

fn status(p: &Value) -> String {
    cells(p)[2].as_str().unwrap().to_string()
}

fn running(ready: bool) -> Value {
    json!({"name":"c","ready":ready,"restartCount":0,"state":{"running":{"startedAt":CREATED}}})
}

#[test]
fn columns_match_upstream() {
    let cols = column_definitions(&PODS);
    let names: Vec<(&str, u64)> = cols
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), c["priority"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        names,
        [
            ("Name", 0),
            ("Ready", 0),
            ("Status", 0),
            ("Restarts", 0),
            ("Age", 0),
            ("IP", 1),
            ("Node", 1),
            ("Nominated Node", 1),
            ("Readiness Gates", 1)
        ]
    );
    for c in cols.as_array().unwrap() {
        for key in ["name", "type", "format", "description", "priority"] {
            assert!(c.get(key).is_some(), "{c} lacks {key}");
        }
        assert_eq!(c["type"], "string");
    }
    assert_eq!(cols[0]["format"], "name");
}

#[test]
fn table_shape_and_partial_object_metadata() {
    let p = pod("crash", one(), json!({"phase":"Running"}));
    let t = table_for(&PODS, &[p.clone(), p], false, now());
    assert_eq!(t["kind"], "Table");
    assert_eq!(t["apiVersion"], "meta.k8s.io/v1");
    assert_eq!(t["rows"].as_array().unwrap().len(), 2);
    let obj = &t["rows"][0]["object"];
    assert_eq!(obj["kind"], "PartialObjectMetadata");
    assert_eq!(obj["apiVersion"], "meta.k8s.io/v1");
    assert_eq!(obj["metadata"]["name"], "crash");
    assert_eq!(obj["metadata"]["namespace"], "default");
    assert_eq!(obj["metadata"]["labels"], json!({"app":"crash"}));
    assert!(obj["metadata"].get("managedFields").is_none());
    assert_eq!(t["rows"][0]["cells"].as_array().unwrap().len(), 9);
}

#[test]
fn crash_loop_with_restart_age() {
    let p = pod(
        "crash",
        one(),
        json!({"phase":"Running","podIPs":[{"ip":"10.244.0.9"}],
        "containerStatuses":[{"name":"c","ready":false,"restartCount":5,
            "state":{"waiting":{"reason":"CrashLoopBackOff"}},
            "lastState":{"terminated":{"exitCode":1,"reason":"Error","finishedAt":"2026-11-25T09:56:50Z"}}}]}),
    );
    assert_eq!(
        cells(&p),
        vec![
            json!("crash"),
            json!("0/1"),
            json!("CrashLoopBackOff"),
            json!("5 (3m10s ago)"),
            json!("10m"),
            json!("10.244.0.9"),
            json!("node-1"),
            json!("<none>"),
            json!("<none>")
        ]
    );
}

#[test]
fn completed_pod_has_row_condition() {
    let p = pod(
        "done",
        one(),
        json!({"phase":"Succeeded","containerStatuses":[{"name":"c","ready":false,"restartCount":0,
        "state":{"terminated":{"exitCode":0,"reason":"Completed"}}}]}),
    );
    assert_eq!(status(&p), "Completed");
    let t = table_for(&PODS, &[p], true, now());
    assert_eq!(
        t["rows"][0]["conditions"],
        json!([{"type":"Completed","status":"True","reason":"Succeeded","message":"The pod has completed successfully."}])
    );
    let f = pod("f", one(), json!({"phase":"Failed"}));
    let t = table_for(&PODS, &[f], true, now());
    assert_eq!(t["rows"][0]["conditions"][0]["message"], "The pod failed.");
}

#[test]
fn status_reason_wins_over_phase() {
    assert_eq!(
        status(&pod(
            "evicted",
            one(),
            json!({"phase":"Failed","reason":"Evicted"})
        )),
        "Evicted"
    );
}

#[test]
fn terminated_without_reason_prints_exit_code_or_signal() {
    let t = |term: Value| {
        pod(
            "x",
            one(),
            json!({"phase":"Failed","containerStatuses":[{"name":"c","ready":false,"restartCount":0,"state":{"terminated":term}}]}),
        )
    };
    assert_eq!(status(&t(json!({"exitCode":3}))), "ExitCode:3");
    assert_eq!(status(&t(json!({"exitCode":137,"signal":9}))), "Signal:9");
    assert_eq!(
        status(&t(json!({"exitCode":137,"reason":"OOMKilled"}))),
        "OOMKilled"
    );
}

#[test]
fn scheduling_gated() {
    let p = pod(
        "gated",
        json!({"containers":[{"name":"c"}]}),
        json!({"phase":"Pending",
        "conditions":[{"type":"PodScheduled","status":"False","reason":"SchedulingGated"}]}),
    );
    let c = cells(&p);
    assert_eq!(c[2], "SchedulingGated");
    assert_eq!(c[6], "<none>");
}

#[test]
fn readiness_gates_and_nominated_node() {
    let mut spec = one();
    spec["readinessGates"] = json!([{"conditionType":"example.com/gate"}]);
    let p = pod(
        "gates",
        spec,
        json!({"phase":"Running","nominatedNodeName":"node-2","podIPs":[{"ip":"10.244.0.77"}],
        "conditions":[{"type":"Ready","status":"True"},{"type":"example.com/gate","status":"False"}],
        "containerStatuses":[running(true)]}),
    );
    let c = cells(&p);
    assert_eq!(c[1], "1/1");
    assert_eq!(c[2], "Running");
    assert_eq!(c[7], "node-2");
    assert_eq!(c[8], "0/1");
}

fn init_pod(statuses: Value, conditions: Value) -> Value {
    pod(
        "init",
        json!({"initContainers":[{"name":"i1"},{"name":"i2"}],"containers":[{"name":"c"}],"nodeName":"node-1"}),
        json!({"phase":"Pending","initContainerStatuses":statuses,"conditions":conditions,
               "containerStatuses":[{"name":"c","ready":false,"restartCount":0,"state":{"waiting":{"reason":"PodInitializing"}}}]}),
    )
}

#[test]
fn init_progress() {
    let p = init_pod(
        json!([{"name":"i1","ready":false,"restartCount":0,"state":{"running":{}}},
               {"name":"i2","ready":false,"restartCount":0,"state":{"waiting":{"reason":"PodInitializing"}}}]),
        json!([]),
    );
    assert_eq!(status(&p), "Init:0/2");
    let p = init_pod(
        json!([{"name":"i1","ready":false,"restartCount":0,"state":{"terminated":{"exitCode":0,"reason":"Completed"}}},
               {"name":"i2","ready":false,"restartCount":0,"state":{"running":{}}}]),
        json!([]),
    );
    assert_eq!(status(&p), "Init:1/2");
}

#[test]
fn init_failures() {
    let first = |state: Value, restarts: i64| {
        init_pod(
            json!([{"name":"i1","ready":false,"restartCount":restarts,"state":state}]),
            json!([]),
        )
    };
    let p = first(json!({"waiting":{"reason":"CrashLoopBackOff"}}), 3);
    assert_eq!(status(&p), "Init:CrashLoopBackOff");
    assert_eq!(cells(&p)[3], "3");
    assert_eq!(
        status(&first(
            json!({"terminated":{"exitCode":1,"reason":"Error"}}),
            0
        )),
        "Init:Error"
    );
    assert_eq!(
        status(&first(json!({"terminated":{"exitCode":2}}), 0)),
        "Init:ExitCode:2"
    );
    assert_eq!(
        status(&first(json!({"terminated":{"exitCode":2,"signal":15}}), 0)),
        "Init:Signal:15"
    );
}

#[test]
fn pod_initializing_after_init_containers_finish() {
    let done = json!({"terminated":{"exitCode":0,"reason":"Completed"}});
    let p = init_pod(
        json!([{"name":"i1","ready":false,"restartCount":0,"state":done},{"name":"i2","ready":false,"restartCount":0,"state":done}]),
        json!([{"type":"Initialized","status":"True"}]),
    );
    assert_eq!(status(&p), "PodInitializing");
}

#[test]
fn pending_and_image_pull_backoff() {
    let p = pod(
        "pending",
        json!({"containers":[{"name":"c"}]}),
        json!({"phase":"Pending"}),
    );
    let c = cells(&p);
    assert_eq!(
        (c[1].as_str(), c[2].as_str(), c[3].as_str()),
        (Some("0/1"), Some("Pending"), Some("0"))
    );
    let p = pod(
        "pull",
        one(),
        json!({"phase":"Pending","containerStatuses":[{"name":"c","ready":false,"restartCount":0,
        "state":{"waiting":{"reason":"ImagePullBackOff"}}}]}),
    );
    assert_eq!(status(&p), "ImagePullBackOff");
}

#[test]
fn terminating_unknown_and_terminal_deletion() {
    let mut p = pod(
        "term",
        one(),
        json!({"phase":"Running","containerStatuses":[running(true)]}),
    );
    p["metadata"]["deletionTimestamp"] = json!("2026-11-25T10:00:30Z");
    let c = cells(&p);
    assert_eq!(
        (c[1].as_str(), c[2].as_str()),
        (Some("1/1"), Some("Terminating"))
    );
    let mut lost = p.clone();
    lost["status"]["reason"] = json!("NodeLost");
    assert_eq!(status(&lost), "Unknown");
    let mut done = p.clone();
    done["status"] = json!({"phase":"Succeeded","containerStatuses":[{"name":"c","ready":false,"restartCount":0,"state":{"terminated":{"exitCode":0,"reason":"Completed"}}}]});
    assert_eq!(status(&done), "Completed");
}

#[test]
fn completed_container_beside_a_running_one() {
    let spec = json!({"containers":[{"name":"a"},{"name":"b"}],"nodeName":"node-1"});
    let statuses = json!([{"name":"a","ready":false,"restartCount":0,"state":{"terminated":{"exitCode":0,"reason":"Completed"}}},
                          {"name":"b","ready":true,"restartCount":0,"state":{"running":{}}}]);
    let p = pod(
        "mix",
        spec.clone(),
        json!({"phase":"Running","containerStatuses":statuses,"conditions":[{"type":"Ready","status":"False"}]}),
    );
    assert_eq!(status(&p), "NotReady");
    let p = pod(
        "mix",
        spec,
        json!({"phase":"Running","containerStatuses":statuses,"conditions":[{"type":"Ready","status":"True"}]}),
    );
    assert_eq!(status(&p), "Running");
    assert_eq!(cells(&p)[1], "1/2");
}

#[test]
fn sidecars_count_towards_ready_and_total() {
    let spec = json!({"initContainers":[{"name":"side","restartPolicy":"Always"}],"containers":[{"name":"c"}],"nodeName":"n"});
    let p = pod(
        "sc",
        spec,
        json!({"phase":"Running",
        "conditions":[{"type":"Initialized","status":"True"},{"type":"Ready","status":"True"}],
        "initContainerStatuses":[{"name":"side","ready":true,"started":true,"restartCount":2,"state":{"running":{}},
                                  "lastState":{"terminated":{"exitCode":1,"finishedAt":"2026-11-25T09:59:00Z"}}}],
        "containerStatuses":[running(true)]}),
    );
    let c = cells(&p);
    assert_eq!(c[1], "2/2");
    assert_eq!(c[2], "Running");
    assert_eq!(c[3], "2 (60s ago)");
}

#[test]
fn init_restarts_count_only_while_initializing() {
    // Regular init container restarted twice, app container four times: once
    // initialized only the app container counts (upstream printers_test `test11`).
    let spec = json!({"initContainers":[{"name":"i"}],"containers":[{"name":"c"}],"nodeName":"n"});
    let p = pod(
        "r",
        spec,
        json!({"phase":"Running","conditions":[{"type":"Initialized","status":"True"}],
        "initContainerStatuses":[{"name":"i","ready":false,"restartCount":2,"state":{"terminated":{"exitCode":0,"reason":"Completed"}},
                                  "lastState":{"terminated":{"exitCode":1,"finishedAt":"2026-11-25T09:51:00Z"}}}],
        "containerStatuses":[{"name":"c","ready":true,"restartCount":4,"state":{"running":{}},
                              "lastState":{"terminated":{"exitCode":1,"finishedAt":"2026-11-25T09:59:40Z"}}}]}),
    );
    assert_eq!(cells(&p)[3], "4 (20s ago)");
}

#[test]
fn missing_creation_timestamp_is_unknown_age() {
    let mut p = pod("x", one(), json!({"phase":"Pending"}));
    p["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("creationTimestamp");
    assert_eq!(cells(&p)[4], "<unknown>");
}

#[test]
fn garbage_objects_do_not_panic() {
    for o in [
        json!(null),
        json!(3),
        json!({"status":"x","spec":[1]}),
        json!({"status":{"containerStatuses":[1,null,{"state":3}]}}),
    ] {
        let t = table_for(&PODS, &[o], true, now());
        assert_eq!(t["rows"][0]["cells"].as_array().unwrap().len(), 9);
    }
}
