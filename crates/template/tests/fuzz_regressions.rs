//! Inputs the fuzz target found that made rendering panic: each must now render or fail with an
//! error.

use infrakit_template::{render_with_fuel, Origin, Vars};

fn render(text: &str) -> Result<String, String> {
    let origin = Origin {
        display: "spec.yaml".into(),
        dir: std::env::temp_dir(),
        name: "spec.yaml".into(),
    };
    render_with_fuel(text, &origin, &Vars::new(), 50_000).map_err(|e| e.to_string())
}

#[test]
fn a_raw_block_with_an_overlapping_tag_does_not_panic() {
    // `{% raw %}` followed by `{%}`: the closing `%}` overlaps the opening `{%`.
    let _ = render(include_str!("fuzz/crash-cb8ce0a4.txt"));
    assert!(render("{% raw %}{{ LogicalID }}{%}x").is_err());
    assert_eq!(
        render("{% raw %}{{ x }}{%}{% endraw %}").unwrap(),
        "{{ x }}{%}"
    );
}

#[test]
fn an_unclosed_expression_ending_in_a_multibyte_character_does_not_panic() {
    let _ = render(include_str!("fuzz/crash-36ce265d.txt"));
    assert!(render("a: {{ x ڂ").is_err());
}
