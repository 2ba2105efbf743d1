//! What the tests share: their deadline, and running a test on both runtime flavours.

use std::time::Duration;

/// How long any wait in these tests may take before it fails.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// Runs each test body once on each runtime flavour, as `<test>::current_thread` and
/// `<test>::multi_thread`.
#[macro_export]
macro_rules! on_both_runtimes {
    ($($test:ident),* $(,)?) => {$(
        mod $test {
            #[tokio::test(flavor = "current_thread")]
            async fn current_thread() {
                super::$test().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn multi_thread() {
                super::$test().await;
            }
        }
    )*};
}
