"""MkDocs hook: fill the CLI reference page from the Typer app at build time (cli/reference.py), never by hand."""

MARKER = "<!-- cli-reference -->"


def on_page_markdown(markdown: str, page, config, files) -> str:
    if MARKER not in markdown:
        return markdown
    from seqtrain_cli.reference import markdown as reference

    return markdown.replace(MARKER, reference())
