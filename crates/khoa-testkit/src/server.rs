pub fn free_port() -> u16 {
    0
}
pub struct KhoaProcess;
