"""``python -m ipt_ray.cli``: the ``ipt-ray`` command."""

from ipt_ray.cli.app import main

main()
