'use strict';

// The documented path of the PM2 process file. The real file is at the repository root.
module.exports = require('../../pm2.config.js');
