//! `wardgate generate`: the man pages and shell completions the package
//! ships, checked against the clap definitions they come from — every
//! command has its page, is named in its parent's page, and is offered by
//! the bash completion as bash itself computes it.

use std::path::Path;
use std::process::Command;

use clap::CommandFactory;
use wardgate::cli::Cli;

use crate::{stdout_of, wardgate};

/// Every command below the root, as its path of names (`["decode", "ble"]`).
fn commands(cmd: &clap::Command, parent: &[String], out: &mut Vec<Vec<String>>) {
    for sub in cmd.get_subcommands() {
        let mut path = parent.to_vec();
        path.push(sub.get_name().to_owned());
        commands(sub, &path, out);
        out.push(path);
    }
}

/// A man page as a reader sees it, through groff with every warning on
/// (minus signs and hyphens read as `-`); a warning fails the test.
fn render(page: &Path) -> String {
    let out = Command::new("groff")
        .args(["-k", "-man", "-Tutf8", "-P-cbou", "-ww"])
        .arg(page)
        .output()
        .expect("groff (Debian package groff-base) renders the man pages");
    assert!(out.status.success(), "groff failed on {}", page.display());
    let warnings = String::from_utf8_lossy(&out.stderr);
    assert!(warnings.is_empty(), "{}: {warnings}", page.display());
    String::from_utf8(out.stdout)
        .unwrap()
        .replace(['\u{2212}', '\u{2010}'], "-")
}

/// What bash's programmable completion offers after `words` (the word
/// being completed is empty), with the generated script sourced.
fn bash_completes(script: &Path, words: &[String]) -> Vec<String> {
    let line = format!("wardgate {} ", words.join(" "));
    let program = format!(
        r#"source "$1"
COMP_LINE="{line}"; COMP_POINT=${{#COMP_LINE}}
COMP_WORDS=(wardgate {words} ""); COMP_CWORD={cword}
_wardgate wardgate "" "{prev}"
printf '%s\n' "${{COMPREPLY[@]}}""#,
        words = words.join(" "),
        cword = words.len() + 1,
        prev = words.last().map_or("wardgate", String::as_str),
    );
    stdout_of(
        Command::new("bash")
            .args(["-c", &program, "bash"])
            .arg(script),
    )
    .lines()
    .map(str::to_owned)
    .collect()
}

#[test]
fn man_pages_and_completions_cover_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let listed = stdout_of(wardgate().args(["generate", "--out"]).arg(dir.path()));

    let root = Cli::command();
    let mut all = Vec::new();
    commands(&root, &[], &mut all);
    assert!(all.len() > 5, "{all:?}");

    let man = dir.path().join("man");
    let top = render(&man.join("wardgate.1"));
    assert!(top.contains(root.get_about().unwrap().to_string().trim_end_matches('.')));
    let bash = dir.path().join("completions/wardgate.bash");
    let zsh = std::fs::read_to_string(dir.path().join("completions/_wardgate")).unwrap();
    let fish = std::fs::read_to_string(dir.path().join("completions/wardgate.fish")).unwrap();
    for path in &all {
        let (name, parent) = path.split_last().unwrap();
        let page = man.join(format!("wardgate-{}.1", path.join("-")));
        assert!(
            listed.contains(&*page.to_string_lossy()),
            "{} not listed",
            page.display()
        );
        render(&page);
        let parent_page = if parent.is_empty() {
            man.join("wardgate.1")
        } else {
            man.join(format!("wardgate-{}.1", parent.join("-")))
        };
        let parent_text = render(&parent_page);
        assert!(
            parent_text.contains(&format!("wardgate-{}(1)", path.join("-"))),
            "{} does not name {name}",
            parent_page.display()
        );
        assert!(
            bash_completes(&bash, parent).contains(name),
            "bash does not complete `wardgate {}`",
            path.join(" ")
        );
        assert!(zsh.contains(name), "zsh completion lacks {name}");
        assert!(fish.contains(name), "fish completion lacks {name}");
    }
    // The packaging command stays out of the pages and completions.
    assert!(!man.join("wardgate-generate.1").exists());
    assert!(!bash_completes(&bash, &[]).contains(&"generate".to_owned()));
}
