//! The storage conformance suite against a real S3 server (moto), including the
//! concurrent create race and recorded multipart uploads.

use labelgen_tests::s3::S3Server;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_store_conforms() {
    let s3 = S3Server::start();
    s3.create_bucket("conformance");
    let store = s3.store("conformance", "p");
    shared::storage::conformance::run_all(&store, "suite").await;
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
