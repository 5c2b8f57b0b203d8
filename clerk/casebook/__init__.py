"""The case book: cases, their debtors and what they owe (`cases`), case files read and written (`intake`),
who may do what (`access`), notices to judges and applicants (`notices`), and exports (`exports`)."""
