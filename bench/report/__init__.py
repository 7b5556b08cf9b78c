"""Publishing results: merged leaderboards (HTML, Markdown, CSV, Parquet), fitness cards, recommendations."""
