use observer_daemon::{config::Config, kernel_config, loader};
fn main() -> anyhow::Result<()> {
    env_logger::init();
    let c = Config::defaults();
    let kernel = kernel_config::kernel_config(&c.kernel.btf_path, 0, 0)?;
    let p = loader::load(&loader::LoadOptions { kernel, ring_buffer_bytes: 1 << 20, prefixes: &c.files.prefixes, suffixes: &c.files.suffixes })?;
    println!("{:#?}", p.attached);
    Ok(())
}
