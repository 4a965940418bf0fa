fn main() {
    std::process::exit(weft_cli::run());
}
