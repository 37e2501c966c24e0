//! The storage conformance suite against a real S3 server (moto), including the
//! concurrent create race and recorded multipart uploads.

use labelgen_tests::s3::S3Server;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_store_conforms() {
    let s3 = S3Server::start();
    s3.create_bucket("conformance");
    let store = s3.store("conformance", "p");
    shared::storage::conformance::run_all(&store, "suite").await;
    // If-Match: the finalize lock's takeover and rewrites rely on it.
    assert!(shared::storage::conformance::conditional_replace(&store.child("cas")).await, "the S3 server replaces conditionally (If-Match)");
    // The suite's dropped writer left an upload open; aborting its record closed it, so
    // none remains in the bucket.
    assert_eq!(s3.open_uploads("conformance"), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_bucket_is_a_clear_error() {
    let s3 = S3Server::start();
    let store = s3.store("no-such-bucket", "");
    let err = store.check_reachable().await.unwrap_err().to_string();
    assert!(err.contains("s3://no-such-bucket") && err.to_lowercase().contains("bucket"), "{err}");
}

/// S3 settings object_store does not read are refused by name, not ignored (a profile
/// would silently give way to the machine's own role); a half-set key pair names the
/// location. Both are the worker's setting, before any request.
#[test]
fn s3_settings_that_would_be_ignored_are_refused_by_name() {
    use labelgen_tests::bins::{cmd, run, stderr};
    let verify = |envs: &[(&str, &str)]| {
        let mut c = cmd("coordinator");
        c.args(["verify", "s3://bucket/runs/r1"]);
        for var in [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_PROFILE",
            "AWS_SHARED_CREDENTIALS_FILE",
            "AWS_CONFIG_FILE",
            "AWS_SESSION_TOKEN",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        ] {
            c.env_remove(var);
        }
        c.envs(envs.iter().copied());
        let o = run(c);
        assert!(!o.status.success());
        stderr(&o)
    };
    let e = verify(&[("AWS_PROFILE", "labelgen")]);
    assert!(e.contains("AWS_PROFILE is set, but profiles and credential files are not read here") && e.contains("s3://bucket/runs/r1"), "{e}");
    let e = verify(&[("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"), ("AWS_REGION", "us-east-1")]);
    assert!(e.contains("s3://bucket/runs/r1") && e.contains("SecretAccessKey"), "the location and the missing setting are named: {e}");
}
