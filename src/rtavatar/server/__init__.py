"""The avatar server (`rtavatar serve`): HTTP + WebSocket around one shared Avatar."""
