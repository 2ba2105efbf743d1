//! Servers under faults and hostile peers (PROTOCOL.md section 2), written once and run
//! against each adapter's server (`<check>::smol`, `<check>::mio`, `<check>::tokio`): churn through thousands
//! of connections that end in every way, running out of file descriptors, and draining for a
//! rolling restart.
//!
//! The churn and exhaustion checks concern the whole process (they count its open file
//! descriptors, or lower its limit on them) while the tests of one binary run on parallel
//! threads: so each of them runs in a child process of its own, this binary run again for
//! that one test ([`in_child`]). The drain checks ([`drain`]) run in this process.
#![cfg(target_os = "linux")]

use std::env;
use std::process::Command;
use std::thread;
use std::time::Duration;

use callosum_tests::conformance::Adapter;

/// In the module of a check with the module's name, the check's tests for each server
/// adapter, each run in a child process: `<check>::smol`, `<check>::mio` and `<check>::tokio`.
macro_rules! each_server_in_child {
    ($check:ident) => {
        #[test]
        fn smol() {
            $crate::in_child(
                concat!(stringify!($check), "::smol"),
                callosum_tests::conformance::Adapter::Smol,
                $check,
            );
        }

        #[test]
        fn mio() {
            $crate::in_child(
                concat!(stringify!($check), "::mio"),
                callosum_tests::conformance::Adapter::Mio,
                $check,
            );
        }

        #[test]
        fn tokio() {
            $crate::in_child(
                concat!(stringify!($check), "::tokio"),
                callosum_tests::conformance::Adapter::Tokio,
                $check,
            );
        }
    };
}

mod churn;
mod counted;
mod drain;
mod exhaustion;

/// Set in a child process: the adapter it checks (`Smol`, `Mio` or `Tokio`).
const CHILD: &str = "CALLOSUM_RELIABILITY_CHILD";

/// How long a child may run before it gives up; its own waits are bounded well below this.
const CHILD_LIMIT: Duration = Duration::from_secs(120);

/// In the parent: runs this binary again for the test `name` alone, with [`CHILD`] naming
/// `adapter`, and passes if that child ran the test and it passed. In the child: runs
/// `check` here, ending the process if it takes longer than [`CHILD_LIMIT`].
fn in_child(name: &str, adapter: Adapter, check: fn(Adapter)) {
    let adapter_name = format!("{adapter:?}");
    if let Ok(asked) = env::var(CHILD) {
        assert_eq!(
            asked, adapter_name,
            "the child checks the adapter it was asked to"
        );
        thread::spawn(|| {
            thread::sleep(CHILD_LIMIT);
            eprintln!("the check took longer than {CHILD_LIMIT:?}: ending the child");
            std::process::exit(1);
        });
        check(adapter);
        return;
    }
    let output = Command::new(env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads", "1"])
        .env(CHILD, &adapter_name)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    print!("{stdout}");
    eprint!("{}", String::from_utf8_lossy(&output.stderr));
    assert!(
        output.status.success(),
        "{name} failed in its child process"
    );
    assert!(
        stdout.contains("test result: ok. 1 passed"),
        "the child process did not run {name}"
    );
}
