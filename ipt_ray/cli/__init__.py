"""The ``ipt-ray`` command: thin wrappers that parse flags, call one library function and
format its result.

- :mod:`.app`: the typer app and the console-script entry point (``main``);
- :mod:`.format`: one-line errors, flag wording of library errors, tables, ``--set`` parsing;
- one module per command group: :mod:`.train`, :mod:`.search`, :mod:`.browse` (best, ui),
  :mod:`.export`, :mod:`.predict` (predict, prompts), :mod:`.jobs` (jobs, cluster).

Nothing is re-exported here: ``ipt_ray.cli.app`` is the module, ``ipt_ray.cli.app.app`` the
typer app (a package attribute ``app`` would be replaced by the submodule of that name).
"""
