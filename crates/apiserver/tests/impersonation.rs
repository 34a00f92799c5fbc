//! Impersonation (`kubectl --as`, `--as-group`, `--as-uid`) and TokenReview through the
//! real API, with upstream's checks, answers and messages.

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, PostParams};
use podvisor_apiserver::ApiServer;
use podvisor_apiserver::testing::memory_server;
use serde_json::{Value, json};

/// Appends a user to the static token file (read again at the next request).
fn add_user(srv: &ApiServer, token: &str, user: &str) {
    use std::io::Write as _;
    let path = srv.config().data_dir.join("tokens.csv");
    let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    writeln!(f, "{token},{user},uid-{user},\"\"").unwrap();
}

/// `method path` with `headers` and `body` through `client`: the answer, or its Status.
async fn send(
    client: &kube::Client,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> Result<Value, kube::core::Status> {
    let mut req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let body = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
    client
        .request::<Value>(req.body(body).unwrap())
        .await
        .map_err(podvisor_testkit::api_status)
}

/// `kubectl auth whoami` as the user `headers` ask for: (username, uid, groups).
async fn whoami(
    client: &kube::Client,
    headers: &[(&str, &str)],
) -> Result<(String, String, Vec<String>), kube::core::Status> {
    let r = send(
        client,
        "POST",
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        headers,
        Some(json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})),
    )
    .await?;
    let u = &r["status"]["userInfo"];
    let groups = u["groups"]
        .as_array()
        .map(|g| {
            g.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    Ok((
        u["username"].as_str().unwrap_or("").to_string(),
        u["uid"].as_str().unwrap_or("").to_string(),
        groups,
    ))
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn impersonation_is_authorized_part_by_part_as_upstream() {
    let srv = memory_server().await;
    let admin = srv.in_process_client(&srv.admin_token());
    srv.ensure_node_token("n1").unwrap();
    add_user(&srv, "alice-token-0123456789", "alice");
    let alice = srv.in_process_client("alice-token-0123456789");

    // Nobody granted alice impersonation.
    let refused = send(
        &alice,
        "GET",
        "/api/v1/services",
        &[("Impersonate-User", "system:node:n1")],
        None,
    )
    .await
    .unwrap_err();
    assert_eq!(
        (
            refused.code,
            refused.reason.as_str(),
            refused.message.as_str()
        ),
        (
            403,
            "Forbidden",
            r#"users "system:node:n1" is forbidden: User "alice" cannot impersonate resource "users" in API group "" at the cluster scope"#
        )
    );

    // The admin acts as the node: what the node may do, refused with the node's name.
    let node = [
        ("Impersonate-User", "system:node:n1"),
        ("Impersonate-Group", "system:nodes"),
    ];
    assert_eq!(
        whoami(&admin, &node).await.unwrap(),
        (
            "system:node:n1".to_string(),
            String::new(),
            strings(&["system:nodes", "system:authenticated"])
        )
    );
    send(&admin, "GET", "/api/v1/services", &node, None)
        .await
        .expect("a node lists Services");
    let refused = send(
        &admin,
        "GET",
        "/apis/discovery.k8s.io/v1/endpointslices",
        &node,
        None,
    )
    .await
    .unwrap_err();
    assert_eq!(
        refused.message,
        r#"endpointslices.discovery.k8s.io is forbidden: User "system:node:n1" cannot list resource "endpointslices" in API group "discovery.k8s.io" at the cluster scope"#
    );
    // Without its group a node's name is only a name: no node authorizer.
    let refused = send(
        &admin,
        "GET",
        "/api/v1/nodes",
        &[("Impersonate-User", "system:node:n1")],
        None,
    )
    .await
    .unwrap_err();
    assert_eq!(refused.code, 403);

    // A service account gets its fixed groups; a uid is taken as given.
    assert_eq!(
        whoami(
            &admin,
            &[
                ("Impersonate-User", "system:serviceaccount:default:default"),
                ("Impersonate-Uid", "1234"),
            ]
        )
        .await
        .unwrap(),
        (
            "system:serviceaccount:default:default".to_string(),
            "1234".to_string(),
            strings(&[
                "system:serviceaccounts",
                "system:serviceaccounts:default",
                "system:authenticated"
            ])
        )
    );
    // Anonymous is not in system:authenticated: no discovery, no reviews.
    let refused = send(
        &admin,
        "GET",
        "/api",
        &[("Impersonate-User", "system:anonymous")],
        None,
    )
    .await
    .unwrap_err();
    assert_eq!(
        refused.message,
        r#"forbidden: User "system:anonymous" cannot get path "/api""#
    );
    // Groups without a user.
    let refused = whoami(&admin, &[("Impersonate-Group", "system:masters")])
        .await
        .unwrap_err();
    assert_eq!(refused.code, 500);

    // alice may impersonate bob (only), and not bob's groups unless granted.
    send(
        &admin,
        "POST",
        "/apis/rbac.authorization.k8s.io/v1/clusterroles",
        &[],
        Some(json!({"metadata": {"name": "as-bob"}, "rules": [
            {"verbs": ["impersonate"], "apiGroups": [""], "resources": ["users"], "resourceNames": ["bob"]}]})),
    )
    .await
    .unwrap();
    send(
        &admin,
        "POST",
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
        &[],
        Some(json!({"metadata": {"name": "alice-as-bob"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "as-bob"},
            "subjects": [{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "alice"}]})),
    )
    .await
    .unwrap();
    assert_eq!(
        whoami(&alice, &[("Impersonate-User", "bob")])
            .await
            .unwrap()
            .0,
        "bob"
    );
    let refused = whoami(&alice, &[("Impersonate-User", "carol")])
        .await
        .unwrap_err();
    assert_eq!(
        refused.message,
        r#"users "carol" is forbidden: User "alice" cannot impersonate resource "users" in API group "" at the cluster scope"#
    );
    let refused = whoami(
        &alice,
        &[
            ("Impersonate-User", "bob"),
            ("Impersonate-Group", "system:masters"),
        ],
    )
    .await
    .unwrap_err();
    assert_eq!(
        refused.message,
        r#"groups "system:masters" is forbidden: User "alice" cannot impersonate resource "groups" in API group "" at the cluster scope"#
    );
    let refused = whoami(
        &alice,
        &[
            ("Impersonate-User", "bob"),
            ("Impersonate-Extra-Scopes", "view"),
        ],
    )
    .await
    .unwrap_err();
    assert_eq!(
        refused.message,
        r#"userextras.authentication.k8s.io "view" is forbidden: User "alice" cannot impersonate resource "userextras/scopes" in API group "authentication.k8s.io" at the cluster scope"#
    );
}

/// A TokenReview of `token` for `audiences` by `client`: its `status`.
async fn review(
    client: &kube::Client,
    token: &str,
    audiences: &[&str],
) -> Result<Value, kube::core::Status> {
    let mut spec = json!({"token": token});
    if !audiences.is_empty() {
        spec["audiences"] = json!(audiences);
    }
    let r = send(
        client,
        "POST",
        "/apis/authentication.k8s.io/v1/tokenreviews",
        &[],
        Some(
            json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": spec}),
        ),
    )
    .await?;
    assert_eq!(r["kind"], "TokenReview");
    Ok(r["status"].clone())
}

#[tokio::test]
async fn token_reviews_name_the_user_of_a_valid_token_for_its_audiences() {
    let srv = memory_server().await;
    let admin = srv.in_process_client(&srv.admin_token());
    let node_token = srv.ensure_node_token("n1").unwrap();
    let api = "https://kubernetes.default.svc.cluster.local";

    let st = review(&admin, &node_token, &[]).await.unwrap();
    assert_eq!(
        st,
        json!({"authenticated": true, "audiences": [api],
            "user": {"username": "system:node:n1", "uid": st["user"]["uid"],
                "groups": ["system:nodes", "system:authenticated"]}})
    );
    // A static token is for the API server only.
    assert_eq!(
        review(&admin, &node_token, &["vault"]).await.unwrap(),
        json!({"user": {}, "error": "invalid bearer token"})
    );
    assert_eq!(
        review(&admin, "not-a-token", &[]).await.unwrap(),
        json!({"user": {}, "error": "invalid bearer token"})
    );
    let refused = review(&admin, "", &[]).await.unwrap_err();
    assert_eq!(
        (refused.code, refused.message.as_str()),
        (400, "token is required for TokenReview in authentication")
    );

    // A service-account token for another audience: valid for it, not for the API server.
    let sas: Api<ServiceAccount> = Api::namespaced(admin.clone(), "default");
    let sa_token = loop {
        match sas
            .create_token_request(
                "default",
                &PostParams::default(),
                &TokenRequest {
                    spec: TokenRequestSpec {
                        audiences: vec!["vault".into()],
                        expiration_seconds: Some(3600),
                        ..Default::default()
                    },
                    ..Default::default()
                },
            )
            .await
        {
            Ok(t) => break t.status.expect("status").token,
            // The default ServiceAccount is made by the controller manager, not here.
            Err(_) => {
                sas.create(
                    &PostParams::default(),
                    &serde_json::from_value(json!({"metadata": {"name": "default"}})).unwrap(),
                )
                .await
                .unwrap();
            }
        }
    };
    let st = review(&admin, &sa_token, &["vault", "other"])
        .await
        .unwrap();
    assert_eq!(st["authenticated"], true);
    assert_eq!(st["audiences"], json!(["vault"]));
    assert_eq!(
        st["user"]["username"],
        "system:serviceaccount:default:default"
    );
    assert_eq!(
        review(&admin, &sa_token, &[]).await.unwrap(),
        json!({"user": {}, "error": format!(r#"token audiences ["vault"] is invalid for the target audiences ["{api}"]"#)})
    );
    // Deleting the ServiceAccount invalidates its tokens.
    sas.delete("default", &Default::default()).await.unwrap();
    assert_eq!(
        review(&admin, &sa_token, &["vault"]).await.unwrap(),
        json!({"user": {}, "error": "service account token has been invalidated"})
    );

    // Who may review tokens: not any user.
    add_user(&srv, "alice-token-0123456789", "alice");
    let alice = srv.in_process_client("alice-token-0123456789");
    let refused = review(&alice, &node_token, &[]).await.unwrap_err();
    assert_eq!(
        refused.message,
        r#"tokenreviews.authentication.k8s.io is forbidden: User "alice" cannot create resource "tokenreviews" in API group "authentication.k8s.io" at the cluster scope"#
    );
}
