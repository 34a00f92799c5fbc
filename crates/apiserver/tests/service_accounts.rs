//! Service accounts through the real API: the pod admission (`serviceAccountName`, the
//! `kube-api-access-*` volume, `automountServiceAccountToken`), TokenRequest (defaults,
//! validation, binding, NodeRestriction), the token authenticator (user, groups, revocation
//! when the bound pod or the service account goes away) and `kubectl create token`.

use std::time::Duration;

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use podvisor_apiserver::testing::serving_memory_server;
use podvisor_testkit::{container, pod};
use serde_json::json;

fn token_request(seconds: Option<i64>, bound: Option<(&str, &str)>) -> TokenRequest {
    TokenRequest {
        spec: TokenRequestSpec {
            expiration_seconds: seconds,
            bound_object_ref: bound.map(|(name, uid)| BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(name.into()),
                uid: Some(uid.into()),
            }),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn claims(token: &str) -> serde_json::Value {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).expect("jwt payload");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("claims")
}

#[tokio::test]
async fn pods_get_a_token_volume_and_tokens_die_with_their_pod() {
    let serving = serving_memory_server().await;
    let srv = serving.server.clone();
    let admin = srv.in_process_client(&srv.admin_token());
    let pods: Api<Pod> = Api::namespaced(admin.clone(), "default");
    let sas: Api<ServiceAccount> = Api::namespaced(admin.clone(), "default");
    // RBAC grants service accounts nothing by default: let this namespace's accounts read.
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "sa-view", "namespace": "default"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group",
                      "name": "system:serviceaccounts:default"}],
    }))
    .unwrap();
    Api::<RoleBinding>::namespaced(admin.clone(), "default")
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();

    // Admission: default service account, one projected volume mounted everywhere.
    let p = pods
        .create(
            &PostParams::default(),
            &pod("web")
                .container(container("a").image("busybox"))
                .init_container(container("i").image("busybox"))
                .build(),
        )
        .await
        .expect("create pod");
    let spec = p.spec.clone().unwrap();
    assert_eq!(spec.service_account_name.as_deref(), Some("default"));
    assert_eq!(spec.service_account.as_deref(), Some("default"));
    let vols = spec.volumes.clone().unwrap();
    assert_eq!(vols.len(), 1);
    assert!(vols[0].name.starts_with("kube-api-access-"));
    let sources = vols[0].projected.as_ref().unwrap().sources.clone().unwrap();
    assert_eq!(
        sources[0]
            .service_account_token
            .as_ref()
            .unwrap()
            .expiration_seconds,
        Some(3607)
    );
    for c in spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
    {
        let m = &c.volume_mounts.as_ref().unwrap()[0];
        assert_eq!(
            m.mount_path,
            "/var/run/secrets/kubernetes.io/serviceaccount"
        );
        assert_eq!(m.read_only, Some(true));
    }

    // automountServiceAccountToken: false on the pod, or on the service account.
    let mut no_mount = pod("quiet").container(container("a")).build();
    no_mount
        .spec
        .as_mut()
        .unwrap()
        .automount_service_account_token = Some(false);
    let q = pods
        .create(&PostParams::default(), &no_mount)
        .await
        .unwrap();
    assert!(q.spec.unwrap().volumes.unwrap_or_default().is_empty());
    sas.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "robot"},
            "automountServiceAccountToken": false}))
        .unwrap(),
    )
    .await
    .unwrap();
    let mut robot = pod("robot").container(container("a")).build();
    robot.spec.as_mut().unwrap().service_account_name = Some("robot".into());
    let r = pods.create(&PostParams::default(), &robot).await.unwrap();
    assert!(r.spec.unwrap().volumes.unwrap_or_default().is_empty());

    // A missing service account refuses the pod.
    let mut ghost = pod("ghost").container(container("a")).build();
    ghost.spec.as_mut().unwrap().service_account_name = Some("nobody".into());
    let err = pods
        .create(&PostParams::default(), &ghost)
        .await
        .unwrap_err();
    let kube::Error::Api(s) = err else {
        panic!("{err}")
    };
    assert_eq!(s.code, 403);
    assert_eq!(
        s.message,
        "pods \"ghost\" is forbidden: error looking up service account default/nobody: serviceaccount \"nobody\" not found"
    );

    // TokenRequest: validation, defaults, binding.
    let err = sas
        .create_token_request(
            "default",
            &PostParams::default(),
            &token_request(Some(60), None),
        )
        .await
        .unwrap_err();
    let kube::Error::Api(s) = err else {
        panic!("{err}")
    };
    assert_eq!(s.code, 422);
    assert!(
        s.message
            .ends_with("may not specify a duration less than 10 minutes"),
        "{}",
        s.message
    );
    let uid = p.metadata.uid.clone().unwrap();
    let wrong = sas
        .create_token_request(
            "default",
            &PostParams::default(),
            &token_request(None, Some(("web", "not-the-uid"))),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(wrong, kube::Error::Api(ref s) if s.code == 409),
        "{wrong}"
    );
    let other_sa = sas
        .create_token_request(
            "robot",
            &PostParams::default(),
            &token_request(None, Some(("web", &uid))),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(other_sa, kube::Error::Api(ref s) if s.code == 400 && s.message == "cannot bind token for serviceaccount \"robot\" to pod running with different serviceaccount name."),
        "{other_sa}"
    );
    let tr = sas
        .create_token_request(
            "default",
            &PostParams::default(),
            &token_request(None, Some(("web", &uid))),
        )
        .await
        .expect("token request");
    assert_eq!(tr.spec.expiration_seconds, Some(3600));
    assert_eq!(
        tr.spec.audiences,
        vec!["https://kubernetes.default.svc.cluster.local".to_string()]
    );
    let status = tr.status.expect("status");
    let c = claims(&status.token);
    assert_eq!(c["sub"], "system:serviceaccount:default:default");
    assert_eq!(c["iss"], "https://kubernetes.default.svc.cluster.local");
    assert_eq!(c["kubernetes.io"]["pod"]["name"], "web");
    assert_eq!(c["kubernetes.io"]["pod"]["uid"], uid.as_str());
    assert_eq!(
        c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(),
        3600
    );
    // The kubelet's 3607 s is extended to a year with `warnafter`.
    let kubelet = sas
        .create_token_request(
            "default",
            &PostParams::default(),
            &token_request(Some(3607), Some(("web", &uid))),
        )
        .await
        .unwrap();
    let kc = claims(&kubelet.status.unwrap().token);
    let iat = kc["iat"].as_i64().unwrap();
    assert_eq!(kc["exp"].as_i64().unwrap() - iat, 365 * 24 * 3600);
    assert_eq!(
        kc["kubernetes.io"]["warnafter"].as_i64().unwrap() - iat,
        3607
    );

    // The token authenticates as the service account ...
    let as_sa = srv.in_process_client(&status.token);
    let listed = Api::<Pod>::namespaced(as_sa.clone(), "default")
        .list(&ListParams::default())
        .await
        .expect("the service account lists pods");
    assert_eq!(listed.items.len(), 3);
    // ... and may not write (its binding grants only reads).
    let denied = Api::<Pod>::namespaced(as_sa.clone(), "default")
        .delete("quiet", &DeleteParams::default())
        .await
        .unwrap_err();
    assert!(
        matches!(denied, kube::Error::Api(ref s) if s.code == 403),
        "{denied}"
    );
    // An unbound token of another service account works until that account is deleted.
    let robot_token = sas
        .create_token_request("robot", &PostParams::default(), &token_request(None, None))
        .await
        .unwrap()
        .status
        .unwrap()
        .token;
    let as_robot = srv.in_process_client(&robot_token);
    Api::<Pod>::namespaced(as_robot.clone(), "default")
        .list(&ListParams::default())
        .await
        .expect("robot lists");
    pods.delete("robot", &DeleteParams::default())
        .await
        .unwrap();
    sas.delete("robot", &DeleteParams::default()).await.unwrap();
    let gone = Api::<Pod>::namespaced(as_robot, "default")
        .list(&ListParams::default())
        .await
        .unwrap_err();
    assert!(
        matches!(gone, kube::Error::Api(ref s) if s.code == 401),
        "{gone}"
    );

    // A node may ask only for tokens bound to pods on itself: n1 runs a pod of the
    // `default` account (so the Node authorizer lets it ask), but `web` is not on n1.
    pods.create(
        &PostParams::default(),
        &pod("on-n1")
            .node_name("n1")
            .container(container("a").image("busybox"))
            .build(),
    )
    .await
    .unwrap();
    let node_token = srv.ensure_node_token("n1").unwrap();
    let node = srv.in_process_client(&node_token);
    let node_sas: Api<ServiceAccount> = Api::namespaced(node, "default");
    let refused = node_sas
        .create_token_request(
            "default",
            &PostParams::default(),
            &token_request(Some(3607), Some(("web", &uid))),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(refused, kube::Error::Api(ref s) if s.code == 403 && s.message == "serviceaccounts \"default\" is forbidden: node requested token bound to a pod scheduled on a different node"),
        "{refused}"
    );

    // `kubectl create token`.
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.crt");
    std::fs::write(&ca, srv.ca_pem()).unwrap();
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new("kubectl")
            .args([
                "create",
                "token",
                "default",
                "--duration=20m",
                &format!("--server=https://127.0.0.1:{}", serving.port),
                &format!("--certificate-authority={}", ca.display()),
                &format!("--token={}", srv.admin_token()),
                &format!("--cache-dir={}", dir.path().join("cache").display()),
                "-n",
                "default",
            ])
            .env("HOME", dir.path())
            .env("KUBECONFIG", dir.path().join("none"))
            .output(),
    )
    .await
    .expect("kubectl in time")
    .expect("kubectl runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8(out.stdout).unwrap();
    let kc = claims(printed.trim());
    assert_eq!(
        kc["exp"].as_i64().unwrap() - kc["iat"].as_i64().unwrap(),
        1200
    );

    // Deleting the pod revokes the tokens bound to it.
    pods.delete("web", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    let revoked = Api::<Pod>::namespaced(as_sa, "default")
        .list(&ListParams::default())
        .await
        .unwrap_err();
    assert!(
        matches!(revoked, kube::Error::Api(ref s) if s.code == 401),
        "{revoked}"
    );
    serving.stop().await;
}
