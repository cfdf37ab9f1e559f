"""Report notebooks as HTML, PDF and Markdown files, written beside the notebook.

Owns the export formats (``EXPORT_FORMATS``): HTML (nbconvert's ``HTMLExporter``),
PDF (nbconvert's ``webpdf`` exporter — its HTML template and page setup — printed by the
system's Chromium: ``/usr/bin/chromium``, or the binary ``$DEEPANALYZE_CHROMIUM`` names;
never a browser downloaded for it) and Markdown (nbconvert's ``MarkdownExporter``, the
images of outputs and of the report's attachments written to a folder beside the
file), where each file goes, and one readable line when a file cannot be made.

Must not execute notebooks, and must not start a browser other than the one named.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from nbformat import NotebookNode

CHROMIUM_ENV = "DEEPANALYZE_CHROMIUM"
DEFAULT_CHROMIUM = "/usr/bin/chromium"
EXPORT_FORMATS: dict[str, str] = {"html": ".html", "pdf": ".pdf", "markdown": ".md"}
"""Format → file suffix."""
IMAGES_SUFFIX = "_images"
"""``REPORT.md``'s images go to ``REPORT_images/`` beside it."""
PAGE_RENDER_MS = 500
"""How long the page may lay out (fonts, MathJax) before it is printed."""


class ExportError(RuntimeError):
    """A report could not be exported; the message is one line meant for users."""


def chromium_path() -> str:
    """The browser that prints PDFs: ``$DEEPANALYZE_CHROMIUM``, else Debian's Chromium."""
    return os.environ.get(CHROMIUM_ENV, "").strip() or DEFAULT_CHROMIUM


def export_path(notebook_path: Path, fmt: str) -> Path:
    """Where ``fmt`` of ``notebook_path`` goes: beside it, its suffix replaced."""
    try:
        return notebook_path.with_suffix(EXPORT_FORMATS[fmt])
    except KeyError:
        raise ExportError(f"unknown export format {fmt!r}: use {', '.join(EXPORT_FORMATS)}") from None


def export_notebook(notebook: NotebookNode, path: Path, fmt: str) -> list[Path]:
    """Write ``notebook`` as ``fmt`` to ``path``; returns the files written (Markdown's
    images included). Raises ``ExportError``."""
    if fmt == "html":
        from nbconvert import HTMLExporter  # heavy imports, only when asked for

        body, _ = HTMLExporter().from_notebook_node(notebook)
        path.write_text(body, encoding="utf-8")
        return [path]
    if fmt == "pdf":
        pdf, _ = _pdf_exporter().from_notebook_node(notebook)
        path.write_bytes(pdf)
        return [path]
    if fmt == "markdown":
        return _markdown(notebook, path)
    raise ExportError(f"unknown export format {fmt!r}: use {', '.join(EXPORT_FORMATS)}")


def export_beside(notebook: NotebookNode, notebook_path: Path, formats: Iterable[str]) -> list[Path]:
    """Each of ``formats`` of ``notebook``, written beside ``notebook_path``."""
    written: list[Path] = []
    for fmt in formats:
        written += export_notebook(notebook, export_path(notebook_path, fmt), fmt)
    return written


def _markdown(notebook: NotebookNode, path: Path) -> list[Path]:
    from nbconvert import MarkdownExporter

    images = path.stem + IMAGES_SUFFIX
    body, resources = MarkdownExporter().from_notebook_node(notebook, resources={"output_files_dir": images})
    path.write_text(body, encoding="utf-8")
    written = [path]
    for name, data in sorted((resources.get("outputs") or {}).items()):
        target = (path.parent / name).resolve()
        if not target.is_relative_to((path.parent / images).resolve()):
            continue  # nbconvert names them inside the folder; nothing else is written
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data if isinstance(data, bytes) else str(data).encode("utf-8"))
        written.append(target)
    return written


def _pdf_exporter():  # type: ignore[no-untyped-def]
    from nbconvert.exporters.webpdf import WebPDFExporter

    class SystemChromiumPDFExporter(WebPDFExporter):
        """nbconvert's ``webpdf`` exporter, printed by the system's Chromium."""

        def run_playwright(self, html: str) -> bytes:
            # As WebPDFExporter does: in a thread of its own (the caller may run a loop).
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                return pool.submit(asyncio.run, _print_pdf(html, self.paginate)).result()

    return SystemChromiumPDFExporter()


async def _print_pdf(html: str, paginate: bool) -> bytes:
    browser_path = chromium_path()
    if not Path(browser_path).is_file():
        raise ExportError(
            f"PDF export needs Chromium: none at {browser_path} (`apt-get install chromium`, "
            f"or set {CHROMIUM_ENV} to a Chromium binary)"
        )
    try:
        from playwright.async_api import Error as PlaywrightError
        from playwright.async_api import async_playwright
    except ImportError:
        raise ExportError(
            'PDF export needs Playwright: pip install "jupyter-deepanalyze[pdf]" (no browser is downloaded)'
        ) from None
    # Chromium refuses to run as root with its sandbox; only then is it switched off.
    args = ["--no-sandbox"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []
    with tempfile.TemporaryDirectory(prefix="deepanalyze-pdf-") as folder:
        page_file = Path(folder) / "report.html"
        page_file.write_text(html, encoding="utf-8")
        try:
            async with async_playwright() as playwright:
                browser = await playwright.chromium.launch(
                    executable_path=browser_path,
                    args=args,
                    headless=True,
                    handle_sigint=False,
                    handle_sigterm=False,
                    handle_sighup=False,
                )
                try:
                    page = await browser.new_page()
                    await page.emulate_media(media="print")
                    await page.goto(page_file.as_uri(), wait_until="networkidle")
                    await page.wait_for_timeout(PAGE_RENDER_MS)
                    options: dict[str, object] = {"print_background": True}
                    if not paginate:
                        size = await page.evaluate(
                            "() => { const r = document.body.getBoundingClientRect();"
                            " return {width: Math.ceil(r.width) + 1, height: Math.ceil(r.height) + 1}; }"
                        )
                        options.update(width=min(size["width"], 200 * 72), height=min(size["height"], 200 * 72))
                    return await page.pdf(**options)  # type: ignore[arg-type]
                finally:
                    await browser.close()
        except PlaywrightError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ExportError(f"Chromium ({browser_path}) could not print the PDF: {first}") from None
