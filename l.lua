wrk.method="POST"
wrk.body="username=admin&password=correct-horse-battery"
wrk.headers["Content-Type"]="application/x-www-form-urlencoded"
