//! The release link reads two files that cargo does not see (Makefile: the symbol ordering
//! file and the linker script): told here, cargo relinks berth when either changes, rather
//! than keep a binary laid out by the previous order.
fn main() {
    println!("cargo:rerun-if-changed=scripts/symbol-order.txt");
    println!("cargo:rerun-if-changed=scripts/cold-code.ld");
}
