"""Sphinx configuration of the course website (built by `make site`, see site/build.py).

The notebooks are shown as committed: myst-nb renders their stored outputs and executes nothing. Everything a
page needs is in _site/: MathJax comes from the npm package installed into site/node_modules by
`make site-install` and is copied into _static/mathjax/, so no page asks a CDN for anything.
"""

import os

project = "Diffusion, from the equations to locked-image editing"
author = "the course's authors"
copyright = "the course's authors, MIT licence"

extensions = ["myst_nb"]

# The notebooks as committed: no execution, their outputs as stored (stderr included, as a learner sees it).
nb_execution_mode = "off"
nb_output_stderr = "show"
nb_merge_streams = True
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "attrs_block"]
myst_dmath_double_inline = True
myst_heading_anchors = 3
# Headings in notebook outputs (the course map of notebook 00) are not section titles of the page.
nb_render_markdown_format = "myst"

exclude_patterns = ["downloads/**", "_build", "**.ipynb_checkpoints"]
suppress_warnings = ["mystnb.unknown_mime_type", "myst.header"]

# Maths: a local MathJax 3 (site/build.py copies it to _static/mathjax/); no CDN.
mathjax_path = "mathjax/tex-chtml.js"
mathjax3_config = {
    "tex": {"tags": "ams"},
    # The menu's accessibility explorer would load more components; keep the page to what is bundled. (MathJax 3
    # has no "enrich" setting, MathJax 4 has: naming it here made every page log 'Invalid option "enrich"'.)
    "options": {"menuOptions": {"settings": {"collapsible": False, "explorer": False}}},
}

html_theme = "sphinx_book_theme"
html_title = "Diffusion, from the equations to locked-image editing"
html_static_path = ["_static"]
html_css_files = ["course.css"]
# The theme binds its ☰ and contents buttons to hidden twins: course.js hands the visible ones' clicks over (and lets
# an inline formula wider than its line scroll).
html_js_files = ["course.js"]
html_favicon = "_static/favicon.svg"
html_copy_source = False
html_show_sourcelink = False
html_last_updated_fmt = None
html_theme_options = {
    "repository_url": os.environ.get("COURSE_REPO", "https://github.com/diffusion-course/diffusion-course"),
    "repository_branch": "main",
    "path_to_docs": "",
    "use_repository_button": True,
    "use_download_button": False,
    "use_fullscreen_button": True,
    "launch_buttons": {"colab_url": "https://colab.research.google.com"},
    "home_page_in_toc": True,
    "show_toc_level": 2,
    "navigation_with_keys": False,
}
# Light by default (the figures are drawn on white); without it a first visit logs "invalid theme mode".
html_context = {"default_mode": "light"}


def _display_maths_as_in_jupyter(app, doctree):
    """Give MathJax each $$...$$ block as Jupyter does, \\[ ... \\], not wrapped in Sphinx's split environment.

    Sphinx wraps display maths that contains a line break \\\\ in \\begin{split}, where \\tag is not allowed;
    the notebooks are written for JupyterLab and Colab, which hand MathJax the block as it is.
    """
    from docutils import nodes

    for node in doctree.findall(nodes.math_block):
        if node.get("nowrap") or node.get("number"):
            continue
        text = node.astext().strip()
        node.children = [nodes.Text(f"\\[{text}\\]")]
        node["nowrap"] = True


def setup(app):
    app.connect("doctree-read", _display_maths_as_in_jupyter)
    return {"parallel_read_safe": True}
