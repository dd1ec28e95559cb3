/* Send the user to the sign-in page when the session has ended (the server answers 401). */
(function () {
  var origFetch = window.fetch;
  window.fetch = function () {
    return origFetch.apply(this, arguments).then(function (resp) {
      try {
        if (resp.status === 401 && resp.url.indexOf('/_dash-') !== -1) {
          var here = window.location.pathname + window.location.search;
          window.location.assign('/login?expired=1&next=' + encodeURIComponent(here));
        }
      } catch (e) { /* ignore */ }
      return resp;
    });
  };
})();
