"""Reports: terminal tables (`tables`), figures (`plots`), HTML/Markdown bench reports (`bench_report`) and
paper 2's findings checked against bench rows (`findings`)."""
