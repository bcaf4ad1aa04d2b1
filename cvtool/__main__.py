from cvtool.cli import run

run()
