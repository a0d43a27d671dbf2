"""Screenshot of a sweep's runs in the MLflow UI, filtered by a param (docs/mlflow/runs_filtered.png).

Not part of hypercl: run it with any Python that has playwright (pip install playwright; it drives
the system's Chromium, e.g. Debian's `chromium` package, so no browser download is needed), against
`mlflow ui` serving the sweep's store on loopback:

    mlflow ui --backend-store-uri sqlite:///runs/sweeps/<name>/mlflow.db --host 127.0.0.1 --port 5077
    python docs/mlflow/screenshot.py --url http://127.0.0.1:5077 --experiment 1 --sweep <name> \
        --out docs/mlflow/runs_filtered.png
"""

from __future__ import annotations

import argparse
import re
import urllib.parse

from playwright.sync_api import sync_playwright

FILTER = "params.`hnet.activation` = 'elu'"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:5077")
    parser.add_argument("--experiment", default="1")
    parser.add_argument("--sweep", required=True, help="the sweep's name (its parent run's, expanded to show its trials)")
    parser.add_argument("--filter", default=FILTER)
    parser.add_argument("--columns", nargs="*", default=["Dataset", "Models", "User", "Version", "hnet.activation", "method.beta", "final_acc"],
                        help="columns to toggle (Dataset and Models are on by default: off)")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--out", default="docs/mlflow/runs_filtered.png")
    args = parser.parse_args()
    # workflowType=machine_learning: MLflow 3.17 opens experiments in its GenAI view unless told otherwise
    query = urllib.parse.urlencode({"workflowType": "machine_learning", "searchFilter": args.filter})
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1600, "height": 760})
        page.goto(f"{args.url}/#/experiments/{args.experiment}/runs?{query}")
        page.wait_for_selector("text=matching runs", timeout=60_000)
        page.get_by_role("button", name="Close").last.click()  # the Assistant side panel
        page.get_by_role("row").filter(has_text=args.sweep).get_by_role("button").first.click()  # expand the parent
        for column in args.columns:  # provenance, the filtered param and the objective beside each run
            page.get_by_test_id("column-selection-dropdown").filter(has_text="Columns").click()
            page.get_by_placeholder("Search columns").fill(column)
            # the tree node titled exactly so (the search also matches it inside longer names)
            title = page.locator(".du-bois-light-tree-title", has_text=re.compile(f"^{re.escape(column)}$"))
            page.locator(".du-bois-light-tree-treenode").filter(has=title).locator(
                ".du-bois-light-tree-checkbox").first.click()
            page.keyboard.press("Escape")
        page.wait_for_timeout(1500)
        page.screenshot(path=args.out)
        browser.close()


if __name__ == "__main__":
    main()
