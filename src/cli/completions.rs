//! `gallra completions SHELL`, generated from the command's clap definition.

use clap::{Args, CommandFactory};

#[derive(Args)]
pub struct CompletionsArgs {
    shell: clap_complete::Shell,
}

pub fn run(args: CompletionsArgs) -> anyhow::Result<i32> {
    clap_complete::generate(
        args.shell,
        &mut crate::Cli::command(),
        "gallra",
        &mut std::io::stdout(),
    );
    Ok(0)
}
