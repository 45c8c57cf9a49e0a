process SPATIALDOMAINS_MULTIQC_CONTENT {
    tag "${meta.id}"
    label 'process_single'

    input:
    tuple val(meta), path(metrics, stageAs: 'metrics/*'), path(qc, stageAs: 'qc/*')   // every run's metrics JSON, every slice's qc.json
    val params_json     // the run's parameters, one-line JSON (MultiQC's workflow summary)
    val versions_json   // software versions {process: {tool: version}}, one-line JSON

    output:
    path "mqc/*"        , emit: mqc        // *_mqc.tsv tables, *_mqc_versions.yml, the workflow summary *_mqc.yaml
    path "versions.yml" , emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args  = task.ext.args ?: ''
    def files = { list, flag -> [list].flatten().collect { f -> "${flag} ${f}" }.join(' ') }
    """
    export HOME="\$PWD" XDG_CACHE_HOME="\$PWD/.cache" MPLCONFIGDIR="\$PWD/.cache/matplotlib" NUMBA_CACHE_DIR="\$PWD/.cache/numba"

    printf '%s\\n' '${params_json.toString().replace("'", "'\\''")}' > params.json
    printf '%s\\n' '${versions_json.toString().replace("'", "'\\''")}' > software_versions.yml

    spatialdomains multiqc-content \\
        ${files(metrics, '--metrics')} \\
        ${files(qc, '--qc')} \\
        --versions software_versions.yml \\
        --params params.json \\
        --outdir mqc \\
        ${args}

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        spatialdomains: \$(spatialdomains --version)
        python: \$(python3 --version | sed 's/Python //')
    END_VERSIONS
    """

    stub:
    """
    mkdir -p mqc
    touch mqc/spatialdomains_qc_mqc.tsv mqc/spatialdomains_metrics_mqc.tsv mqc/spatialdomains_mqc_versions.yml

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        spatialdomains: \$(spatialdomains --version)
        python: \$(python3 --version | sed 's/Python //')
    END_VERSIONS
    """
}
