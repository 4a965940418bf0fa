//! weft-netns: runs one netns guest; see `weft_vmm::netns::helper`.

use weft_vmm::netns::{helper, HelperArgs, USAGE};

fn main() {
    let args = match HelperArgs::parse(std::env::args_os().skip(1)) {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{USAGE}");
            return;
        }
        Err(message) => {
            eprintln!("weft-netns: {message}\n\n{USAGE}");
            std::process::exit(2);
        }
    };
    std::process::exit(helper::run(&args));
}
