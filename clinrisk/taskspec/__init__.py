"""Task files: one YAML file declares a clinical risk task (its columns, target, subgroups, model card).

`spec` is the pydantic model of a task file and its loader, `catalogue` finds the task files of a
directory, `features` turns a validated table into a feature matrix. The package sits below
`clinrisk.data` and above the task packages (`clinrisk.tasks.*`), whose code plugins it names.
"""
