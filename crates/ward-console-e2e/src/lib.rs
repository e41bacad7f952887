//! Browser end-to-end tests of the Ward console live in `tests/it.rs`: they drive Debian's
//! headless Chromium through chromedriver (WebDriver) against a real server and a sandboxed
//! simulated fleet. The heavy browser-driver dependency stays in this test-only crate so the
//! product crates never compile it.
