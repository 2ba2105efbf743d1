//! PROTOCOL.md section 2, written once and run against each adapter's server, with raw std
//! sockets as clients.

use std::time::Duration;

use socket2::SockRef;

use callosum_tests::conformance::{Adapter, ServerUnderTest, connect, read_once, read_to_end};
use callosum_tests::each_adapter;

each_adapter!(
    lowest_free_slot_each_line_in_one_read_and_reuse,
    slot_freed_on_fin,
    slot_freed_on_rst,
    max_slots_closes_without_a_line,
);

fn lowest_free_slot_each_line_in_one_read_and_reuse(adapter: Adapter) {
    let server = ServerUnderTest::start(adapter, None);
    let mut a = connect(server.addr);
    let mut b = connect(server.addr);
    let mut c = connect(server.addr);
    // One read each: the line arrives whole, as the original client needs it.
    let lines = [read_once(&mut a), read_once(&mut b), read_once(&mut c)];
    assert_eq!(lines, ["0\r\n", "1\r\n", "2\r\n"]);
    // The line is written before the server publishes its count: wait for the count first.
    server.wait_live(3, "three connections hold a slot");
    drop(b);
    server.wait_live(2, "slot 1 freed");
    let mut b_again = connect(server.addr);
    assert_eq!(
        read_once(&mut b_again),
        "1\r\n",
        "the lowest free slot again"
    );
    let mut d = connect(server.addr);
    assert_eq!(read_once(&mut d), "3\r\n");
}

fn slot_freed_on_fin(adapter: Adapter) {
    let server = ServerUnderTest::start(adapter, None);
    let mut stream = connect(server.addr);
    assert_eq!(read_once(&mut stream), "0\r\n");
    server.wait_live(1, "the connection holds its slot");
    drop(stream);
    server.wait_live(0, "slot freed on FIN");
    assert_eq!(read_once(&mut connect(server.addr)), "0\r\n");
}

fn slot_freed_on_rst(adapter: Adapter) {
    let server = ServerUnderTest::start(adapter, None);
    let mut stream = connect(server.addr);
    assert_eq!(read_once(&mut stream), "0\r\n");
    server.wait_live(1, "the connection holds its slot");
    SockRef::from(&stream)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(stream);
    server.wait_live(0, "slot freed on RST");
    assert_eq!(read_once(&mut connect(server.addr)), "0\r\n");
}

fn max_slots_closes_without_a_line(adapter: Adapter) {
    let server = ServerUnderTest::start(adapter, Some(2));
    let mut zero = connect(server.addr);
    let mut one = connect(server.addr);
    assert_eq!(
        [read_once(&mut zero), read_once(&mut one)],
        ["0\r\n", "1\r\n"]
    );
    let mut refused = connect(server.addr);
    assert_eq!(read_to_end(&mut refused), b"", "closed without a line");
    server.wait_live(2, "the two slots still held");
    drop(zero);
    server.wait_live(1, "slot 0 freed");
    assert_eq!(read_once(&mut connect(server.addr)), "0\r\n");
}
