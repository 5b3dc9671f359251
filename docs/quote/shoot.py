"""Retake this folder's screenshots as README.md describes them: four quotes, each at desktop and phone width
in headless chromium (the page in an iframe of the width, as tests/test_quote_html.py does) and its first two
A4 print pages through chromium's PDF and poppler's pdftoppm.

    python docs/quote/shoot.py            # from the repository root; writes docs/quote/*.png
"""
import html
import pathlib
import subprocess
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parent
KO = ("--lang", "ko", "--currency", "KRW", "--fx", "1400")
QUOTES = {
    "llama-7b": ("tests/data/hf/llama-2-7b.json", "--tokens", "1e11", "--deadline", "30d"),
    "resnet50": ("models/resnet50.yaml", "--samples", "1.28e6", "--epochs", "90", "--deadline", "7d"),
}
WIDTHS = {"desktop": 1280, "phone": 390}
CHROMIUM = ("chromium", "--headless", "--no-sandbox", "--hide-scrollbars")


def run(*cmd):
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        for name, args in QUOTES.items():
            for lang, extra in (("en", ()), ("ko", KO)):
                stem = f"{name}-{lang}"
                page = tmp / f"{stem}.html"
                run(sys.executable, "-m", "sizing.cli", "quote", *args, *extra, "-o", str(page), "--force")
                for size, width in WIDTHS.items():
                    wrapper = tmp / f"{stem}-{size}.html"
                    wrapper.write_text(f'<body style="margin:0"><iframe style="width:{width}px;height:1500px;'
                                       f'border:0" srcdoc="{html.escape(page.read_text())}"></iframe>')
                    run(*CHROMIUM, f"--window-size={width},1500", f"--screenshot={HERE / f'{stem}-{size}.png'}",
                        wrapper.as_uri())
                pdf = tmp / f"{stem}.pdf"
                run(*CHROMIUM, "--no-pdf-header-footer", f"--print-to-pdf={pdf}", page.as_uri())
                for n in (1, 2):
                    run("pdftoppm", "-r", "72", "-png", "-f", str(n), "-l", str(n), "-singlefile", str(pdf),
                        str(HERE / f"{stem}-print-{n}"))
                print(stem, file=sys.stderr)


if __name__ == "__main__":
    main()
